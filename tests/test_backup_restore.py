"""Backups are consistent while others write, content-addressed, verified, and
restore never harms the agent it replaces: locally, across homes and on S3."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec.config
import pytest

from tests.helpers import REPO, disk_tree, run_vfs, workspace_tree
from tests.support.s3_server import s3_server
from tests.test_mount_support import requires_fuse
from vfs import Workspace
from vfs.backends import Database
from vfs.backup import backup_agent, list_backups, open_destination, prune, restore_agent
from vfs.mount import mounted

MODES = ["sqlite", "disk", "hybrid"]


def fill(ws: Workspace, files: int = 20, size: int = 100_000) -> None:
    for i in range(files):
        ws.fs.pipe(f"/d{i % 3}/f{i}.bin", bytes([i]) * size)
    ws.fs.pipe("/notes.md", b"# notes\n")
    ws.fs.mkdir("/empty")
    ws.sessions.patch("s1", {"label": "first"})
    ws.transcripts.append("s1", {"role": "user", "content": "hi"})


@pytest.fixture
def agent(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Iterator[str]:
    mode = request.param
    kwargs = {}
    if mode == "hybrid":
        lower = tmp_path / "lower"
        (lower / "src").mkdir(parents=True)
        (lower / "src" / "main.py").write_text("print('lower')\n")
        (lower / "link").symlink_to("src/main.py")
        kwargs["workspace"] = lower
    with Workspace.create("alice", home, mode=mode, **kwargs) as ws:
        fill(ws)
    yield "alice"


@pytest.mark.parametrize("agent", MODES, indirect=True)
def test_a_restored_agent_equals_the_original_in_every_mode(agent, home, tmp_path) -> None:
    backup_agent(agent, str(tmp_path / "backups"), home)
    restore_agent(str(tmp_path / "backups"), agent, home, as_name="copy")
    with Workspace.open(agent, home) as original, Workspace.open("copy", home) as copy:
        assert copy.mode == original.mode
        assert workspace_tree(copy) == workspace_tree(original)
        assert copy.sessions.get("s1").fields == {"label": "first"}
        assert copy.transcripts.events("s1") == original.transcripts.events("s1")
        assert copy.db.integrity_check() == []


@pytest.mark.parametrize("agent", MODES, indirect=True)
def test_a_second_backup_of_an_unchanged_agent_writes_almost_nothing(agent, home, tmp_path) -> None:
    dest = str(tmp_path / "backups")
    first = backup_agent(agent, dest, home)
    second = backup_agent(agent, dest, home)
    assert first.new_bytes >= 1_900_000
    assert second.new_bytes == 0
    assert second.logical_bytes == first.logical_bytes
    assert len(list_backups(open_destination(dest), agent)) == 2


def test_agents_that_hold_the_same_content_share_objects(home, tmp_path) -> None:
    for name in ("a", "b"):
        with Workspace.create(name, home, mode="sqlite") as ws:
            ws.fs.pipe("/same.bin", b"shared" * 100_000)
    dest = str(tmp_path / "backups")
    assert backup_agent("a", dest, home).new_bytes > 0
    assert backup_agent("b", dest, home).new_bytes == 0


def test_restore_refuses_to_replace_an_agent_unless_forced(home, tmp_path) -> None:
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/v.txt", b"backed up")
    dest = str(tmp_path / "backups")
    backup_agent("alice", dest, home)
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("/v.txt", b"later")
    refused = run_vfs("restore", dest, "alice")
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/v.txt") == b"later"
    assert run_vfs("restore", dest, "alice", "--force").returncode == 0
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/v.txt") == b"backed up"


def test_a_backup_restores_on_another_home(home, tmp_path) -> None:
    with Workspace.create("alice", home, mode="disk") as ws:
        fill(ws, files=5)
        expected = workspace_tree(ws)
    dest = str(tmp_path / "backups")
    backup_agent("alice", dest, home)
    other = tmp_path / "other-machine"
    restore_agent(dest, "alice", other)
    with Workspace.open("alice", other) as ws:
        assert ws.mode == "disk"
        assert workspace_tree(ws) == expected
        assert ws.record.workspace == other / "agents" / "alice" / "workspace"


def test_a_damaged_object_fails_the_restore_and_leaves_the_old_agent(home, tmp_path) -> None:
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/v.txt", b"x" * 70_000)
    dest = tmp_path / "backups"
    backup_agent("alice", str(dest), home)
    for obj in (dest / "objects").rglob("*"):
        if obj.is_file():
            obj.write_bytes(b"rot" + obj.read_bytes()[3:])
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("/v.txt", b"current")
    result = run_vfs("restore", str(dest), "alice", "--force")
    assert result.returncode == 1 and "damaged" in result.stderr
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/v.txt") == b"current"
    assert not list((home / "agents").glob(".restore-*"))


def test_prune_keeps_the_newest_backups_and_drops_unused_objects(home, tmp_path) -> None:
    dest = str(tmp_path / "backups")
    with Workspace.create("alice", home, mode="sqlite") as ws:
        for version in range(3):
            ws.fs.pipe("/v.bin", bytes([version + 1]) * 100_000)
            backup_agent("alice", dest, home)
    destination = open_destination(dest)
    removed, objects = prune(destination, "alice", keep=1)
    assert len(removed) == 2 and objects == 4  # two chunks per older version
    assert len(list_backups(destination, "alice")) == 1
    restore_agent(dest, "alice", home, as_name="copy")
    with Workspace.open("copy", home) as ws:
        assert ws.fs.cat("/v.bin") == bytes([3]) * 100_000


WRITER = """
import sys
from vfs import Workspace
ws = Workspace.open("alice")
n = sys.argv[1]
for version in range(10**6):
    for i in range(5):
        ws.fs.pipe(f"/w{n}/f{i}.bin", bytes([version % 250 + 1]) * (20_000 + 1000 * i))
    ws.transcripts.append(f"s{n}", {"version": version})
"""


# Writes through the mount the way editors save: a temporary file renamed over
# the old one, so every file is old or new at any instant.
MOUNT_WRITER = """
import os, sys
root = sys.argv[1]
os.makedirs(f"{root}/m", exist_ok=True)
for version in range(10**6):
    for i in range(5):
        with open(f"{root}/m/.f{i}.tmp", "wb") as out:
            out.write(bytes([version % 250 + 1]) * (20_000 + 1000 * i))
        os.replace(f"{root}/m/.f{i}.tmp", f"{root}/m/f{i}.bin")
"""


@requires_fuse
@pytest.mark.parametrize("mode", MODES)
def test_a_backup_taken_while_four_processes_and_a_mount_write_restores_whole(
    home, tmp_path, mode
) -> None:
    kwargs = {"workspace": tmp_path / "lower"} if mode == "hybrid" else {}
    if mode == "hybrid":
        (tmp_path / "lower").mkdir()
    Workspace.create("alice", home, mode=mode, **kwargs).close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mounted("alice", mountpoint, home=home))
        stack.callback(kill_all, [spawn(MOUNT_WRITER, str(mountpoint))])
        stack.callback(kill_all, [spawn(WRITER, str(n)) for n in range(4)])
        for _ in range(3):
            done = run_vfs("backup", "alice", str(tmp_path / "backups"))
            assert done.returncode == 0, done.stderr
    for backup in list_backups(open_destination(str(tmp_path / "backups")), "alice"):
        name = f"r{backup.id[-6:]}"
        restore_agent(str(tmp_path / "backups"), "alice", home, as_name=name, backup_id=backup.id)
        with Workspace.open(name, home) as ws:
            assert ws.db.integrity_check() == []
            for path, content in workspace_tree(ws).items():
                if content is not None and not path.endswith(".tmp"):
                    # Every file old or new, never torn: one byte value throughout.
                    assert len(set(content)) == 1, path
                    assert len(content) == 20_000 + 1000 * int(path[-5])
            for n in range(4):
                versions = [e.event["version"] for e in ws.transcripts.events(f"s{n}")]
                assert versions == list(range(len(versions)))
            assert ws.fs.exists("/m/f0.bin"), "nothing written through the mount was backed up"


def spawn(code: str, arg: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, arg], cwd=REPO)


def kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
        process.wait()


@pytest.mark.parametrize("kill_after", [1, 2, 3, 4])
def test_a_restore_killed_at_any_step_leaves_the_old_agent_or_the_new(
    home, tmp_path, kill_after
) -> None:
    with Workspace.create("alice", home, mode="sqlite") as ws:
        for i in range(600):  # three batches of chunks
            ws.fs.pipe(f"/f{i}.txt", f"backed up {i}".encode())
    dest = str(tmp_path / "backups")
    backup_agent("alice", dest, home)
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("/f0.txt", b"after the backup")
    killed = run_vfs("restore", dest, "alice", "--force", kill_after=kill_after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    listing = run_vfs("cat", "alice:/f0.txt")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout in ("after the backup", "backed up 0")
    with Workspace.open("alice", home) as ws:
        assert ws.db.integrity_check() == []
        assert ws.fs.cat("/f599.txt") == b"backed up 599"
    again = run_vfs("restore", dest, "alice", "--force")
    assert again.returncode == 0, again.stderr
    assert run_vfs("cat", "alice:/f0.txt").stdout == "backed up 0"
    assert not list((home / "agents").glob(".restore-*"))


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server() as environment:
        yield environment


def test_backup_to_and_restore_from_s3(s3, home, tmp_path, monkeypatch) -> None:
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    # fsspec reads its configuration once: point it at the server for this test only.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3["FSSPEC_S3_ENDPOINT_URL"]})
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("backups")
    with Workspace.create("alice", home, mode="disk") as ws:
        fill(ws, files=6)
        expected = workspace_tree(ws)
    first = run_vfs("backup", "alice", "s3://backups/team", "--json")
    assert first.returncode == 0, first.stderr
    second = backup_agent("alice", "s3://backups/team", home)
    assert second.new_bytes == 0
    listed = run_vfs("backups", "s3://backups/team")
    assert listed.stdout.count("alice") == 2
    other = tmp_path / "other-machine"
    restore_agent("s3://backups/team", "alice", other)
    with Workspace.open("alice", other) as ws:
        assert workspace_tree(ws) == expected
        assert disk_tree(ws.record.workspace) == disk_tree(home / "agents" / "alice" / "workspace")
    Database(other / "agents" / "alice" / "agent.sqlite", "agent", create=False).close()
    assert os.stat(other / "agents" / "alice" / "agent.sqlite").st_mode & 0o777 == 0o600
