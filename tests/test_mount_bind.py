"""Disk mode through the kernel: a bind mount of the workspace directory, FUSE when
asked (``--fuse``) or when the process may not mount, and the same bookkeeping for both."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mount_support import FUSE_MISSING, create_agent, env_for

from vfs import Workspace
from vfs.backends.host import mount_table
from vfs.mount.bind import bind, unbind
from vfs.mount.process import mounted
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry

VFS = Path(sys.executable).with_name("vfs")
NOBODY = 65534
SETPRIV = shutil.which("setpriv")


def vfs(
    *args: str, home: Path, check: bool = True, as_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [str(VFS), *args]
    if as_nobody:
        assert SETPRIV is not None
        # An ordinary user: no CAP_SYS_ADMIN, so no mount(2) of its own; only
        # CAP_DAC_READ_SEARCH, to read the interpreter under a private /root.
        command = [
            SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *command,
        ]  # fmt: skip
    done = subprocess.run(
        command, env=env_for(home), capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def mount_info(where: Path) -> tuple[str, str, str]:
    """(root within its filesystem, mount options, filesystem type) of the mount at ``where``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(where):
            return fields[3], fields[5], fields[fields.index("-") + 1]
    raise AssertionError(f"{where} is not mounted")


def listed(home: Path) -> list[dict[str, object]]:
    return json.loads(vfs("mounts", "--json", home=home).stdout)


@pytest.fixture
def disk_agent(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(home, the agent's workspace directory, an empty mount point); nothing stays mounted."""
    home, where = tmp_path / "home", tmp_path / "mnt"
    create_agent(home, "disk")
    where.mkdir()
    try:
        yield home, Registry(home).get("alice").workspace, where
    finally:
        while where in mount_table():
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_mode_mounts_as_a_bind_mount_of_its_directory_both_ways(
    disk_agent: tuple[Path, Path, Path],
) -> None:
    home, directory, where = disk_agent
    assert "bind mount" in vfs("mount", "alice", str(where), home=home).stdout
    root, options, fstype = mount_info(where)
    assert not fstype.startswith("fuse")
    assert {"rw", "nosuid", "nodev"} <= set(options.split(","))
    assert os.stat(where).st_ino == os.stat(directory).st_ino
    assert root.endswith(str(directory))  # its path within its own filesystem
    (where / "from-mount.txt").write_bytes(b"written through the mount")
    (where / "sub").mkdir()
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/from-mount.txt") == b"written through the mount"
        assert ws.fs.isdir("/sub")
        ws.fs.pipe("/sub/from-fsspec.txt", b"written through fsspec")
    assert (where / "sub" / "from-fsspec.txt").read_bytes() == b"written through fsspec"
    (entry,) = listed(home)
    assert (entry["agent"], entry["mountpoint"], entry["kind"], entry["pid"]) == (
        "alice",
        str(where),
        "bind",
        None,
    )
    assert " bind " in vfs("mounts", home=home).stdout
    vfs("umount", str(where), home=home)
    assert where not in mount_table()
    assert list(where.iterdir()) == []
    assert listed(home) == []


def test_a_read_only_bind_mount_is_never_writable_while_a_writer_races_it(
    tmp_path: Path,
) -> None:
    # A writer opening a file at the mount point over and over, while it is
    # bound read-only 200 times: no bind fails (EBUSY) and nothing is written
    # through. Bound then remounted read-only in two calls, 26 of 200 failed
    # and the writer's file reached the workspace.
    source, target = tmp_path / "workspace", tmp_path / "mnt"
    source.mkdir()
    target.mkdir()
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            try:
                fd = os.open(target / "written.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            except OSError:
                continue  # EROFS through the mount
            time.sleep(0.0002)  # held open: a remount to read-only would be EBUSY
            os.close(fd)

    racing = threading.Thread(target=writer)
    racing.start()
    failures = []
    try:
        for _ in range(200):
            try:
                bind(source, target, read_only=True)
            except OSError as exc:
                failures.append(exc.errno)
                continue
            unbind(target, lazy=True)
    finally:
        stop.set()
        racing.join()
    assert failures == []
    assert not (source / "written.txt").exists()


def test_read_only_bind_mount_refuses_every_change_with_erofs(
    disk_agent: tuple[Path, Path, Path],
) -> None:
    home, directory, where = disk_agent
    (directory / "kept.txt").write_bytes(b"kept")
    vfs("mount", "--read-only", "alice", str(where), home=home)
    try:
        assert "ro" in mount_info(where)[1].split(",")
        assert (where / "kept.txt").read_bytes() == b"kept"
        changes = [
            lambda: (where / "new.txt").write_bytes(b"x"),
            lambda: (where / "kept.txt").write_bytes(b"x"),
            lambda: (where / "kept.txt").unlink(),
            lambda: (where / "dir").mkdir(),
            lambda: os.chmod(where / "kept.txt", 0o600),
            lambda: os.rename(where / "kept.txt", where / "moved.txt"),
        ]
        for change in changes:
            with pytest.raises(OSError) as refused:
                change()
            assert refused.value.errno == errno.EROFS
        # Only the mount is read-only: the workspace itself still takes writes.
        with Workspace.open("alice", home) as ws:
            ws.fs.pipe("/kept.txt", b"changed")
        assert (where / "kept.txt").read_bytes() == b"changed"
    finally:
        vfs("umount", str(where), home=home)


def test_mode_switch_rollback_and_second_mount_are_refused_while_bind_mounted(
    disk_agent: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    home, _directory, where = disk_agent
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("/a.txt", b"one")
        ws.checkpoints.create("c")
    vfs("mount", "alice", str(where), home=home)
    try:
        switch = vfs("mode", "alice", "sqlite", home=home, check=False)
        assert switch.returncode == 1
        assert f"mounted at {where}" in switch.stderr and "unmount it first" in switch.stderr
        rollback = vfs("rollback", "alice", "c", home=home, check=False)
        assert rollback.returncode == 1 and f"mounted at {where}" in rollback.stderr
        other = tmp_path / "other"
        other.mkdir()
        again = vfs("mount", "alice", str(other), home=home, check=False)
        assert again.returncode == 1
        assert f"already mounted at {where} (bind mount)" in again.stderr
        assert Registry(home).get("alice").mode == "disk"
    finally:
        vfs("umount", str(where), home=home)
    vfs("mode", "alice", "sqlite", home=home)
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/a.txt") == b"one"


def test_bind_mount_unmounted_behind_our_back_is_a_stale_record_doctor_drops(
    disk_agent: tuple[Path, Path, Path],
) -> None:
    home, _directory, where = disk_agent
    vfs("mount", "alice", str(where), home=home)
    subprocess.run(["umount", str(where)], check=True)  # not `vfs umount`
    table = MountTable(Registry(home).db)
    assert [r.mountpoint for r in table.stale()] == [where]
    found = vfs("doctor", "--json", home=home, check=False)
    assert found.returncode == 1
    assert "stale mount record" in found.stdout
    assert vfs("doctor", "--fix", home=home, check=False).returncode == 0
    assert table.stale() == [] and listed(home) == []
    # Nothing holds the agent any more: it mounts and switches again.
    vfs("mount", "alice", str(where), home=home)
    vfs("umount", str(where), home=home)
    vfs("mode", "alice", "sqlite", home=home)


@pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")
def test_fuse_option_serves_disk_mode_through_fuse(disk_agent: tuple[Path, Path, Path]) -> None:
    home, directory, where = disk_agent
    assert "FUSE, pid" in vfs("mount", "--fuse", "alice", str(where), home=home).stdout
    try:
        assert mount_info(where)[2] == "fuse.agentvfs"
        (entry,) = listed(home)
        assert entry["kind"] == "fuse" and isinstance(entry["pid"], int)
        (where / "through-fuse.txt").write_bytes(b"fuse")
        assert (directory / "through-fuse.txt").read_bytes() == b"fuse"
        assert vfs("mode", "alice", "sqlite", home=home, check=False).returncode == 1
    finally:
        vfs("umount", str(where), home=home)
    assert where not in mount_table() and listed(home) == []


def test_python_api_bind_mounts_disk_mode_and_fuse_true_forces_fuse(
    disk_agent: tuple[Path, Path, Path],
) -> None:
    home, directory, where = disk_agent
    with mounted("alice", where, home=home) as mount:
        assert (mount.kind, mount.process) == ("bind", None)
        assert not mount_table()[where].startswith("fuse")
        (where / "api.txt").write_bytes(b"api")
    assert where not in mount_table()
    assert (directory / "api.txt").read_bytes() == b"api"
    if FUSE_MISSING:
        return
    with mounted("alice", where, home=home, fuse=True) as mount:
        assert mount.kind == "fuse" and mount.process is not None
        assert mount_table()[where] == "fuse.agentvfs"
    assert where not in mount_table()


def test_fuse_mount_options_are_refused_for_a_bind_mount_in_one_line(
    disk_agent: tuple[Path, Path, Path],
) -> None:
    home, _directory, where = disk_agent
    refused = vfs("mount", "-o", "noatime", "alice", str(where), home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: -o noatime is a FUSE mount option; add --fuse to serve"
        " disk-mode agent alice through FUSE"
    ]
    assert where not in mount_table()
    # allow_other is what a bind mount is anyway.
    vfs("mount", "-o", "allow_other", "alice", str(where), home=home)
    vfs("umount", str(where), home=home)


def test_a_symlinked_workspace_directory_is_not_followed(
    disk_agent: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    home, directory, where = disk_agent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("not the agent's")
    shutil.rmtree(directory)
    directory.symlink_to(elsewhere)
    refused = vfs("mount", "alice", str(where), home=home, check=False)
    assert refused.returncode == 1
    assert "symlink" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert where not in mount_table() and listed(home) == []


# Runs in a mount namespace of its own, where /dev/fuse is a 0666 node (as
# distributions ship it; here it is root's only) and mounts stay private.
AS_A_USER = """
set -eu
dev=$1 where=$2
trap 'fusermount3 -u -z "$where" 2>/dev/null || :' EXIT
mount -t tmpfs -o size=1m,mode=0755 devices "$dev"
mknod -m 0666 "$dev/fuse" c 10 229
mount --bind "$dev/fuse" /dev/fuse
as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups \
    --inh-caps=+dac_read_search --ambient-caps=+dac_read_search "$@"; }
as_user "$VFS" mount alice "$where"
grep -F " $where " /proc/self/mountinfo
as_user "$VFS" mounts --json
as_user ls "$where"
as_user "$VFS" umount "$where"
echo unmounted
"""


@pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")
@pytest.mark.skipif(
    SETPRIV is None or shutil.which("unshare") is None, reason="setpriv or unshare is absent"
)
def test_a_user_who_may_not_mount_gets_fuse_instead() -> None:
    # Under /tmp itself, not pytest's 0700 directory: fusermount3 checks the
    # mount point as the user, without the read-search capability.
    base = Path(tempfile.mkdtemp(prefix="vfs-user-"))
    try:
        os.chmod(base, 0o755)
        os.chown(base, NOBODY, NOBODY)
        home, where, devices = base / "home", base / "mnt", base / "dev"
        vfs("init", "--mode", "disk", "alice", home=home, as_nobody=True)
        vfs("mkdir", "alice:/made-by-the-user", home=home, as_nobody=True)
        for directory in (where, devices):
            directory.mkdir()
            os.chown(directory, NOBODY, NOBODY)
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", AS_A_USER, "sh",
             str(devices), str(where)],
            env={**env_for(home), "VFS": str(VFS)}, cwd=base, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].startswith("mounted alice at") and "FUSE, pid" in lines[0]
        assert " - fuse.agentvfs " in lines[1]  # the kernel's word, from mountinfo
        listing = json.loads("\n".join(lines[2:-2]))
        assert [(m["agent"], m["kind"]) for m in listing] == [("alice", "fuse")]
        assert lines[-2:] == ["made-by-the-user", "unmounted"]
        assert where not in mount_table()  # it never left its namespace
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("fuse", [False, True], ids=["bind", "fuse"])
def test_vfs_exec_bind_mounts_disk_mode_unless_fuse_is_asked(
    disk_agent: tuple[Path, Path, Path], fuse: bool
) -> None:
    if fuse and FUSE_MISSING:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is absent")
    home, directory, _where = disk_agent
    script = 'grep -F " $PWD " /proc/self/mountinfo; printf made > made.txt'
    flags = ["--fuse"] if fuse else []
    done = vfs("exec", *flags, "alice", "--", "sh", "-c", script, home=home)
    (line,) = done.stdout.splitlines()  # the command's cwd is the mount point
    assert (" - fuse.agentvfs " in line) == fuse
    assert (directory / "made.txt").read_bytes() == b"made"
    assert listed(home) == []


# `vfs exec` as an ordinary user: the workspace is bind-mounted in a mount
# namespace of the command's own, seen by nobody else.
WAIT_IN_EXEC = """
grep -F " $PWD " /proc/self/mountinfo
printf made > made.txt
while [ ! -e "$1/go" ]; do sleep 0.05; done
"""


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is absent")
def test_vfs_exec_as_an_ordinary_user_bind_mounts_in_a_private_namespace() -> None:
    base = Path(tempfile.mkdtemp(prefix="vfs-user-"))
    try:
        os.chmod(base, 0o755)
        os.chown(base, NOBODY, NOBODY)
        home = base / "home"
        vfs("init", "--mode", "disk", "alice", home=home, as_nobody=True)
        directory = Registry(home).get("alice").workspace
        command = [
            SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
            str(VFS), "exec", "alice", "--", "sh", "-c", WAIT_IN_EXEC, "sh", str(base),
        ]  # fmt: skip
        running = subprocess.Popen(
            command,
            env={**env_for(home), "TMPDIR": str(base)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not (directory / "made.txt").exists():
                assert running.poll() is None, running.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            (entry,) = listed(home)
            assert (entry["agent"], entry["kind"]) == ("alice", "private")
            assert not [w for w in mount_table() if str(w).startswith(str(base))]
            switch = vfs("mode", "alice", "sqlite", home=home, check=False)
            assert switch.returncode == 1 and "unmount it first" in switch.stderr
        finally:
            (base / "go").touch()
            out, err = running.communicate(timeout=60)
        assert running.returncode == 0, err
        (line,) = out.splitlines()
        assert " - fuse" not in line and f" {base}/vfs-exec-alice-" in line
        assert (directory / "made.txt").stat().st_uid == NOBODY
        assert listed(home) == []
        assert sorted(p.name for p in base.iterdir()) == ["go", "home"]
    finally:
        shutil.rmtree(base)


NO_NAMESPACES = """
import sys
from pathlib import Path
from vfs.mount.namespace import spawn
print(spawn(["true"], Path(sys.argv[1]), Path(sys.argv[2])))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is absent")
def test_without_user_namespaces_the_private_bind_reports_unavailable(tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()
    (tmp_path / "target").mkdir()
    # An ordinary user (nobody) in a user namespace of the test's own, whose
    # parent allows no further nested one.
    script = (
        "echo 1 > /proc/sys/user/max_user_namespaces"
        ' && exec unshare --user --map-user=65534 --map-group=65534 "$@"'
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh",
         sys.executable, "-c", NO_NAMESPACES, str(tmp_path / "source"), str(tmp_path / "target")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "None\n"), done.stderr


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is absent")
def test_root_without_cap_sys_admin_reports_the_private_bind_unavailable(tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()
    (tmp_path / "target").mkdir()
    done = subprocess.run(
        [SETPRIV, "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
         sys.executable, "-c", NO_NAMESPACES, str(tmp_path / "source"), str(tmp_path / "target")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "None\n"), done.stderr
