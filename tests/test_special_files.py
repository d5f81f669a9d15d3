"""FIFOs, sockets and devices outside the mount: mode switches, hybrid commit,
export and import, checkpoints, backups, and the fsspec and CLI front ends.

Each keeps a special file as a node of its type, with its permission bits and
(for a device) its ``rdev``; none ever opens one.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import REPO
from vfs import Workspace
from vfs.backends.base import ROOT_INO, Backend
from vfs.backup import backup_agent, restore_agent
from vfs.export import export_tree, import_tree
from vfs.settings.switch import switch_mode

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="disk mode makes real device nodes, which needs CAP_MKNOD"
)

NULL_DEVICE = os.makedev(1, 3)
#: path -> (file type, permission bits, rdev) of the special files every test makes
SPECIAL = {
    "run/fifo": (stat.S_IFIFO, 0o640, 0),
    "run/agent.sock": (stat.S_IFSOCK, 0o755, 0),
    "dev/null": (stat.S_IFCHR, 0o666, NULL_DEVICE),
    "dev/disk": (stat.S_IFBLK, 0o660, os.makedev(8, 1)),
}
MODES = ["sqlite", "disk", "hybrid"]


def make_special(backend: Backend) -> None:
    for path, (kind, bits, rdev) in SPECIAL.items():
        parent, name = backend.resolve_parent(path)
        backend.mknod(parent, name, kind | bits, rdev)


def make_on_disk(root: Path, paths: dict[str, tuple[int, int, int]]) -> None:
    for path, (kind, bits, rdev) in paths.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        os.mknod(root / path, kind | 0o600, rdev)
        os.chmod(root / path, bits)


def specials_of(backend: Backend, ino: int = ROOT_INO, prefix: str = "") -> dict[str, tuple]:
    """Every special file of a workspace, in the form of :data:`SPECIAL`."""
    found: dict[str, tuple] = {}
    for name, attr, _ in backend.readdir(ino):
        if attr.is_dir:
            found.update(specials_of(backend, attr.ino, f"{prefix}{name}/"))
        elif attr.is_special:
            found[prefix + name] = (stat.S_IFMT(attr.mode), stat.S_IMODE(attr.mode), attr.rdev)
    return found


def specials_on_disk(root: Path) -> dict[str, tuple]:
    found: dict[str, tuple] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_IFMT(st.st_mode) not in (stat.S_IFREG, stat.S_IFLNK):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_rdev)
    return found


def agent_with_special(home: Path, mode: str, tmp_path: Path, agent: str = "alice") -> None:
    kwargs: dict[str, object] = {}
    if mode == "hybrid":
        lower = tmp_path / f"lower-{agent}"
        (lower / "run").mkdir(parents=True)
        (lower / "dev").mkdir()
        (lower / "kept.txt").write_text("from the disk")
        kwargs["workspace"] = lower
    with Workspace.create(agent, home, mode=mode, **kwargs) as ws:  # type: ignore[arg-type]
        ws.fs.pipe("notes.md", b"notes")
        ws.fs.makedirs("run", exist_ok=True)
        ws.fs.makedirs("dev", exist_ok=True)
        make_special(ws.files_backend)


# -- mode switches ------------------------------------------------------------------

SWITCHES = [
    ("sqlite", "disk"), ("disk", "sqlite"), ("sqlite", "hybrid"),
    ("hybrid", "sqlite"), ("hybrid", "disk"), ("disk", "hybrid"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "target"), SWITCHES)
def test_a_mode_switch_keeps_special_files(home: Path, tmp_path: Path, source: str, target: str):
    agent_with_special(home, source, tmp_path)
    switch_mode("alice", target, home)
    with Workspace.open("alice", home) as ws:
        assert ws.mode == target
        assert specials_of(ws.files_backend) == SPECIAL
        assert ws.fs.cat("notes.md") == b"notes"
        if target != "sqlite":
            assert specials_on_disk(ws.record.workspace) == SPECIAL
    assert vfs("doctor", "alice", home=home).returncode == 0


def test_a_special_file_in_the_lower_tree_survives_a_switch_to_sqlite(home, tmp_path):
    lower = tmp_path / "lower"
    make_on_disk(lower, SPECIAL)
    Workspace.create("alice", home, mode="hybrid", workspace=lower).close()
    switch_mode("alice", "sqlite", home)
    with Workspace.open("alice", home) as ws:
        assert specials_of(ws.files_backend) == SPECIAL


# -- hybrid commit ------------------------------------------------------------------


def test_hybrid_commit_places_new_special_files_and_moves_lower_ones(home, tmp_path):
    lower = tmp_path / "lower"
    make_on_disk(lower, {"old/p": (stat.S_IFIFO, 0o600, 0)})
    with Workspace.create("alice", home, mode="hybrid", workspace=lower) as ws:
        backend = ws.files_backend
        ws.fs.makedirs("run")
        ws.fs.makedirs("dev")
        make_special(backend)
        backend.rename(ROOT_INO, "old", ROOT_INO, "new")  # a lower FIFO inside a moved directory
        chmod_me = backend.resolve("run/fifo")
        backend.setattr(chmod_me.ino, mode=0o600)
        kinds = {change.path: change.type for change in ws.overlay.diff()}
        assert kinds["run/fifo"] == "other"
        report = ws.overlay.commit()
        assert report.conflicts == []
        assert ws.overlay.diff() == []
    expected = {**SPECIAL, "run/fifo": (stat.S_IFIFO, 0o600, 0), "new/p": (stat.S_IFIFO, 0o600, 0)}
    assert specials_on_disk(lower) == expected
    with Workspace.open("alice", home) as ws:
        assert specials_of(ws.files_backend) == expected


def test_hybrid_commit_of_a_chmod_of_a_lower_device_remakes_it_with_the_new_mode(home, tmp_path):
    lower = tmp_path / "lower"
    make_on_disk(lower, {"null": (stat.S_IFCHR, 0o666, NULL_DEVICE)})
    with Workspace.create("alice", home, mode="hybrid", workspace=lower) as ws:
        backend = ws.files_backend
        backend.setattr(backend.resolve("null").ino, mode=0o600)
        assert [(c.kind, c.path, c.type) for c in ws.overlay.diff()] == [
            ("modified", "null", "other")
        ]
        assert ws.overlay.commit().conflicts == []
    assert specials_on_disk(lower) == {"null": (stat.S_IFCHR, 0o600, NULL_DEVICE)}


# -- export and import ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_export_to_a_directory_and_import_back_keep_special_files(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    out = tmp_path / "exported"
    with Workspace.open("alice", home) as ws:
        report = export_tree(ws, str(out))
    assert report.special == len(SPECIAL)
    assert specials_on_disk(out) == SPECIAL
    with Workspace.create("bob", home, mode="sqlite") as ws:
        assert import_tree(ws, str(out)).special == len(SPECIAL)
        assert specials_of(ws.files_backend) == SPECIAL


@pytest.mark.parametrize("mode", MODES)
def test_a_tar_export_carries_fifos_and_devices_and_names_the_sockets_it_cannot(
    home, tmp_path, mode
):
    agent_with_special(home, mode, tmp_path)
    out = tmp_path / "tree.tar"
    with Workspace.open("alice", home) as ws:
        report = export_tree(ws, str(out))
    assert report.skipped_sockets == ["run/agent.sock"]
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar}
    assert members["run/fifo"].isfifo() and members["run/fifo"].mode == 0o640
    assert members["dev/null"].ischr()
    assert (members["dev/null"].devmajor, members["dev/null"].devminor) == (1, 3)
    assert members["dev/disk"].isblk() and "run/agent.sock" not in members
    with Workspace.create("bob", home, mode="sqlite") as ws:
        import_tree(ws, str(out))
        expected = {p: v for p, v in SPECIAL.items() if p != "run/agent.sock"}
        assert specials_of(ws.files_backend) == expected


# -- checkpoints and backups ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_checkpoint_rollback_brings_special_files_back(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    with Workspace.open("alice", home) as ws:
        ws.checkpoints.create("before")
        backend = ws.files_backend
        backend.unlink(backend.resolve("run").ino, "fifo")
        backend.unlink(backend.resolve("dev").ino, "null")
        backend.mknod(backend.resolve("dev").ino, "null", stat.S_IFIFO | 0o600)  # another type
        changed = {(c.path, c.kind, c.type) for c in ws.checkpoints.diff("before")}
        assert ("/run/fifo", "deleted", "other") in changed
        assert ("/dev/null", "modified", "other") in changed
        ws.checkpoints.restore("before")
    with Workspace.open("alice", home) as ws:
        assert specials_of(ws.files_backend) == SPECIAL


@pytest.mark.parametrize("mode", MODES)
def test_backup_and_restore_keep_special_files(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    backup_agent("alice", str(tmp_path / "backups"), home)
    restore_agent(str(tmp_path / "backups"), "alice", home, as_name="copy")
    with Workspace.open("copy", home) as ws:
        assert specials_of(ws.files_backend) == SPECIAL


# -- fsspec and the CLI -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_fsspec_info_says_other_with_the_mode_and_cat_fails_cleanly(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    with Workspace.open("alice", home) as ws:
        info = ws.fs.info("run/fifo")
        assert info["type"] == "other" and stat.S_ISFIFO(info["mode"]) and info["size"] == 0
        assert ws.fs.info("dev/null")["rdev"] == NULL_DEVICE
        assert {i["name"].rsplit("/", 1)[-1]: i["type"] for i in ws.fs.ls("run")} == {
            "fifo": "other", "agent.sock": "other",
        }  # fmt: skip
        with pytest.raises(OSError, match="not a regular file"):
            ws.fs.cat("run/fifo")
        with pytest.raises(OSError, match="not a regular file"):
            ws.fs.open("dev/null", "rb").read()


@pytest.mark.parametrize("mode", MODES)
def test_copying_a_special_file_is_einval_in_every_mode_and_writes_nothing(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    with Workspace.open("alice", home) as ws:
        for path in SPECIAL:
            with pytest.raises(OSError, match="not a regular file") as refused:
                ws.fs.cp_file(path, "copy")
            assert refused.value.errno == errno.EINVAL, path
            assert not ws.fs.exists("copy")
        with pytest.raises(IsADirectoryError):  # a directory is still EISDIR
            ws.files_backend.copy_file(ws.fs.info("run")["ino"], ROOT_INO, "copy")
    failed = vfs("cp", "alice:/run/fifo", "alice:/copy", home=home)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "not a regular file" in failed.stderr


def vfs(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("vfs")), *args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={**os.environ, "AGENT_VFS_HOME": str(home)},
    )  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_cli_ls_shows_special_files_and_cat_of_one_is_a_one_line_error(home, tmp_path, mode):
    agent_with_special(home, mode, tmp_path)
    listed = vfs("ls", "-l", "alice:/run", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "fifo" in listed.stdout and "agent.sock" in listed.stdout
    failed = vfs("cat", "alice:/run/fifo", home=home)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert "not a regular file" in failed.stderr


def test_mknod_in_the_reserved_tree_is_erofs_and_elsewhere_reaches_the_engine(home, tmp_path):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        backend = ws.backend  # the engine behind the read-only /.vfs tree
        reserved = backend.resolve(".vfs")
        for parent, name in ((reserved.ino, "p"), (ROOT_INO, ".vfs")):
            with pytest.raises(OSError) as refused:
                backend.mknod(parent, name, stat.S_IFIFO | 0o644)
            assert refused.value.errno == errno.EROFS
        made = backend.mknod(ROOT_INO, "p", stat.S_IFIFO | 0o644)
        assert backend.resolve("p") == made and stat.S_ISFIFO(made.mode)
