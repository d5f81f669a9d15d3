"""Checkpoints: take, read in place, diff, roll back, delete, in every mode and front end."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from helpers import REPO, run_vfs, workspace_tree
from test_mount_support import FUSE_MISSING, env_for

from vfs import Workspace
from vfs.backends.chunks import ChunkStore

MODES = ["sqlite", "hybrid", "disk"]
CHUNK = 64 * 1024


def populate(ws: Workspace) -> None:
    fs = ws.fs
    fs.pipe("/a.txt", b"alpha\n")
    fs.pipe("/empty", b"")
    fs.pipe("/src/big.bin", bytes(range(256)) * 1000)  # several chunks
    fs.pipe("/src/sub/c.txt", b"gamma\n")
    fs.mkdir("/emptydir")
    ws.backend.symlink(ws.backend.resolve("/src").ino, "link", b"../a.txt")


def scramble(ws: Workspace) -> None:
    fs = ws.fs
    fs.pipe("/a.txt", b"changed\n")
    fs.rm("/src/sub", recursive=True)
    fs.pipe("/new/file.txt", b"new\n")
    fs.mv("/empty", "/moved")
    data = bytearray(fs.cat("/src/big.bin"))
    data[CHUNK + 5] ^= 0xFF
    fs.pipe("/src/big.bin", bytes(data) + b"tail")
    fs.rmdir("/emptydir")
    ino = ws.backend.resolve("/a.txt").ino
    ws.backend.setattr(ino, mode=stat.S_IFREG | 0o600)


def modes_of(ws: Workspace) -> dict[str, int]:
    return {
        path: info["mode"] & 0o7777
        for path, info in ws.fs.find("/", withdirs=True, detail=True).items()
        if info["type"] != "other"
    }


@pytest.mark.parametrize("mode", MODES)
def test_rollback_restores_content_names_types_and_modes(
    make_workspace: Callable[..., Workspace], mode: str
) -> None:
    ws = make_workspace(mode)
    populate(ws)
    before, before_modes = workspace_tree(ws), modes_of(ws)
    info = ws.checkpoints.create("base", "before the change")
    assert (info.name, info.message, info.mode, info.files) == (
        "base",
        "before the change",
        mode,
        4,
    )
    scramble(ws)
    assert workspace_tree(ws) != before
    kinds = {c.path: c.kind for c in ws.checkpoints.diff("base")}
    assert kinds["/a.txt"] == "modified" and kinds["/new/file.txt"] == "added"
    assert kinds["/src/sub/c.txt"] == "deleted" and kinds["/src/big.bin"] == "modified"
    ws.checkpoints.restore("base")
    assert workspace_tree(ws) == before
    assert modes_of(ws) == before_modes
    assert ws.backend.readlink(ws.backend.resolve("/src/link").ino) == b"../a.txt"
    assert ws.checkpoints.diff("base") == []
    # The checkpoint survives a rollback and can be rolled back to again.
    scramble(ws)
    ws.checkpoints.restore("base")
    assert workspace_tree(ws) == before
    assert ChunkStore(ws.db).wrong_refs() == []


@pytest.mark.parametrize("mode", ["sqlite", "hybrid"])
def test_rollback_restores_xattrs(make_workspace: Callable[..., Workspace], mode: str) -> None:
    ws = make_workspace(mode)
    ws.fs.pipe("/a", b"x")
    ino = ws.backend.resolve("/a").ino
    ws.backend.setxattr(ino, b"user.tag", b"one")
    ws.checkpoints.create("c")
    ws.backend.setxattr(ino, b"user.tag", b"two")
    ws.backend.setxattr(ino, b"user.more", b"x")
    ws.checkpoints.restore("c")
    ino = ws.backend.resolve("/a").ino
    assert ws.backend.listxattr(ino) == [b"user.tag"]
    assert ws.backend.getxattr(ino, b"user.tag") == b"one"


def test_hybrid_rollback_restores_the_overlay_and_leaves_the_lower_tree(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    lower = tmp_path / "lower"
    (lower / "d").mkdir(parents=True)
    (lower / "d" / "keep.txt").write_bytes(b"lower\n")
    (lower / "gone.txt").write_bytes(b"lower gone\n")
    ws = make_workspace("hybrid", workspace=lower)
    ws.fs.pipe("/d/keep.txt", b"upper v1\n")
    ws.checkpoints.create("c")
    ws.fs.pipe("/d/keep.txt", b"upper v2\n")
    ws.fs.rm("/gone.txt")
    ws.fs.pipe("/added.txt", b"added\n")
    ws.checkpoints.restore("c")
    assert ws.fs.cat("/d/keep.txt") == b"upper v1\n"
    assert ws.fs.cat("/gone.txt") == b"lower gone\n"
    assert not ws.fs.exists("/added.txt")
    assert (lower / "d" / "keep.txt").read_bytes() == b"lower\n"
    assert sorted(p.name for p in lower.rglob("*")) == ["d", "gone.txt", "keep.txt"]


def test_disk_rollback_rewrites_the_tree_and_removes_what_the_checkpoint_lacks(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace("disk")
    populate(ws)
    root = ws.record.workspace
    ws.checkpoints.create("c")
    (root / "a.txt").write_bytes(b"edited on disk\n")
    (root / "stray").mkdir()
    (root / "stray" / "x").write_bytes(b"x")
    (root / "src" / "sub").rename(root / "elsewhere")
    untouched = os.stat(root / "src" / "big.bin").st_ino
    ws.checkpoints.restore("c")
    assert (root / "a.txt").read_bytes() == b"alpha\n"
    assert not (root / "stray").exists() and not (root / "elsewhere").exists()
    assert (root / "src" / "sub" / "c.txt").read_bytes() == b"gamma\n"
    assert os.stat(root / "src" / "big.bin").st_ino == untouched  # unchanged: not rewritten
    assert ws.checkpoints.diff("c") == []


def test_disk_second_checkpoint_of_an_unchanged_tree_stores_no_new_chunks(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace("disk")
    for i in range(20):
        ws.fs.pipe(f"/d/f{i}", os.urandom(100_000))
    ws.checkpoints.create("one")
    stored = sorted(ChunkStore(ws.db).rows())
    assert sum(size for _id, _hash, size in stored) > 20 * 99_000  # chunks trim trailing zeros
    ws.checkpoints.create("two")
    assert sorted(ChunkStore(ws.db).rows()) == stored
    ws.checkpoints.delete("one")
    ws.checkpoints.delete("two")
    assert list(ChunkStore(ws.db).rows()) == []


def used_bytes(ws: Workspace) -> int:
    ws.db.value("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = ws.db.value("PRAGMA page_count") - ws.db.value("PRAGMA freelist_count")
    return int(pages * ws.db.value("PRAGMA page_size"))


def test_sqlite_checkpoint_stores_no_file_bytes(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace("sqlite")
    content = 0
    for i in range(300):
        data = os.urandom(50_000 + i)
        ws.fs.pipe(f"/d{i % 10}/f{i}.bin", data)
        content += len(data)
    before = used_bytes(ws)  # the WAL is empty after this
    ws.checkpoints.create("c")
    wal = os.stat(f"{ws.db.path}-wal").st_size
    added = used_bytes(ws) - before
    assert added < content // 100, (added, content)  # rows only: no chunk copied
    # Nor is any chunk's row rewritten (bumping chunks.refs would write every chunk again).
    assert wal < content // 20, (wal, content)
    # The checkpoint keeps content alive that the live tree dropped, and frees it when deleted.
    ws.fs.rm("/d0", recursive=True)
    with Workspace.open("alice", ws.home, checkpoint="c") as saved:
        assert len(saved.fs.cat("/d0/f0.bin")) == 50_000
    chunks = len(list(ChunkStore(ws.db).rows()))
    ws.checkpoints.delete("c")
    assert len(list(ChunkStore(ws.db).rows())) < chunks
    assert ChunkStore(ws.db).wrong_refs() == []


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_reads_in_place_through_workspace_fsspec_and_url(
    make_workspace: Callable[..., Workspace], home: Path, mode: str
) -> None:
    ws = make_workspace(mode)
    populate(ws)
    ws.checkpoints.create("c1")
    ws.fs.pipe("/a.txt", b"later\n")
    with Workspace.open("alice", home, checkpoint="c1") as saved:
        assert saved.read_only and saved.fs.cat("/a.txt") == b"alpha\n"
    fs = fsspec.filesystem("agentvfs", agent="alice", checkpoint="c1")
    assert fs.cat("/a.txt") == b"alpha\n"
    assert fs.cat("/src/big.bin") == bytes(range(256)) * 1000
    with pytest.raises(OSError) as refused:
        fs.pipe("/a.txt", b"x")
    assert refused.value.errno == errno.EROFS
    with fsspec.open("agentvfs://alice/.vfs/checkpoints/c1/a.txt") as f:
        assert f.read() == b"alpha\n"
    live = fsspec.filesystem("agentvfs", agent="alice")
    assert live.ls("/.vfs/checkpoints", detail=False) == ["/.vfs/checkpoints/c1"]
    assert live.cat("/.vfs/checkpoints/c1/src/sub/c.txt") == b"gamma\n"
    assert live.cat("/a.txt") == b"later\n"
    with pytest.raises(OSError) as refused:
        live.pipe("/.vfs/checkpoints/c1/a.txt", b"x")
    assert refused.value.errno == errno.EROFS
    assert "/.vfs" not in "".join(live.find("/"))  # walks never copy checkpoints
    with pytest.raises(FileNotFoundError):
        fsspec.filesystem("agentvfs", agent="alice", checkpoint="nope")
    with pytest.raises(FileNotFoundError):
        live.cat("/.vfs/checkpoints/nope/a.txt")


def test_stores_are_not_rolled_back(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace("sqlite")
    ws.checkpoints.create("c")
    ws.sessions.patch("s1", {"sessionId": "x"})
    ws.caches.set("agent", "k", b"v")
    ws.checkpoints.restore("c")
    assert ws.sessions.get("s1") is not None
    assert ws.caches.get("agent", "k") == b"v"


def test_names_are_checked_and_unique(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace("sqlite")
    ws.checkpoints.create("c")
    with pytest.raises(FileExistsError):
        ws.checkpoints.create("c")
    for bad in ("", "a/b", ".hidden", "-x", "x" * 65):
        with pytest.raises(ValueError):
            ws.checkpoints.create(bad)
    with pytest.raises(FileNotFoundError):
        ws.checkpoints.restore("missing")
    auto = ws.checkpoints.create()
    assert [c.name for c in ws.checkpoints.list()] == ["c", auto.name]


# -- concurrency and crashes -------------------------------------------------------

WRITER = """
import os, sys, time
from vfs import Workspace
ws = Workspace.open("alice", sys.argv[1])
n = 0
while not os.path.exists(sys.argv[2]):
    n += 1
    # Three chunks of one byte value: a torn file would mix values.
    ws.fs.pipe(f"/w/f{n % 5}", bytes([n % 251]) * (3 * 65536))
    ws.fs.pipe(f"/w/new{n % 7}", bytes([n % 251]) * 70000)
"""


@pytest.mark.parametrize("mode", ["sqlite", "hybrid"])
def test_rollback_under_a_concurrent_writer_is_atomic(
    make_workspace: Callable[..., Workspace], home: Path, tmp_path: Path, mode: str
) -> None:
    ws = make_workspace(mode)
    populate(ws)
    for k in range(5):
        ws.fs.pipe(f"/w/f{k}", bytes([200 + k]) * (3 * 65536))
    saved = workspace_tree(ws)
    ws.checkpoints.create("c")
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), str(stop)], cwd=REPO, env=env_for(home)
    )
    try:
        for _ in range(15):
            time.sleep(0.05)
            ws.checkpoints.restore("c")
            with ws.backend.snapshot():
                now = workspace_tree(ws)
            for path, data in now.items():
                if path.startswith("w/") and data:
                    assert len(set(data)) == 1, f"{path} is torn"
                    assert len(data) in (3 * 65536, 70000)
                else:
                    assert saved.get(path, b"?") == data, path
            assert {p for p in saved if not p.startswith("w")} == {
                p for p in now if not p.startswith("w")
            }
    finally:
        stop.touch()
        assert writer.wait(timeout=60) == 0
    ws.checkpoints.restore("c")
    assert workspace_tree(ws) == saved
    assert ChunkStore(ws.db).wrong_refs() == []


KILLED_ROLLBACK = """
import sys
from vfs import Workspace
ws = Workspace.open("alice", sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
ws.checkpoints.restore("c")
print("done", flush=True)
"""


def test_rollback_killed_midway_leaves_all_or_nothing(
    make_workspace: Callable[..., Workspace], home: Path
) -> None:
    ws = make_workspace("sqlite")
    for i in range(400):
        ws.fs.pipe(f"/d{i % 8}/f{i}", os.urandom(3000))
    saved = workspace_tree(ws)
    ws.checkpoints.create("c")
    for i in range(0, 400, 2):
        ws.fs.rm(f"/d{i % 8}/f{i}")
    for i in range(200):
        ws.fs.pipe(f"/n/f{i}", os.urandom(3000))
    changed = workspace_tree(ws)
    ws.close()
    outcomes = set()
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_ROLLBACK, str(home)],
            cwd=REPO,
            env=env_for(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with Workspace.open("alice", home) as again:
            tree = workspace_tree(again)
            assert tree in (saved, changed)
            outcomes.add(tree == saved)
            if tree == saved:  # put the changes back for the next round
                for i in range(0, 400, 2):
                    again.fs.rm(f"/d{i % 8}/f{i}")
                for path, data in changed.items():
                    if path.startswith("n/") and data is not None:
                        again.fs.pipe("/" + path, data)
                assert workspace_tree(again) == changed
    assert outcomes  # at least one round ran; both outcomes are allowed


# -- the command line ----------------------------------------------------------------


def vfs_ok(*args: str) -> str:
    done = run_vfs(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def vfs_error(*args: str) -> str:
    done = run_vfs(*args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 4, done.stderr  # usage errors: 4
    return done.stderr


def test_cli_checkpoint_forms(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace("sqlite")
    ws.fs.pipe("/a.txt", b"one\n")
    assert vfs_ok("checkpoint", "alice", "c1", "-m", "first") == "c1\n"
    assert vfs_ok("checkpoint", "-m", "second", "alice", "c2") == "c2\n"
    assert vfs_ok("checkpoint", "create", "alice", "c3") == "c3\n"
    auto = vfs_ok("checkpoint", "alice").strip()
    assert auto.startswith("cp-")
    listed = json.loads(vfs_ok("checkpoints", "alice", "--json"))
    assert [(c["name"], c["message"]) for c in listed] == [
        ("c1", "first"),
        ("c2", "second"),
        ("c3", None),
        (auto, None),
    ]
    assert "c1" in vfs_ok("checkpoints", "alice")
    ws.fs.pipe("/a.txt", b"two\n")
    ws.fs.pipe("/b.txt", b"b\n")
    assert vfs_ok("diff", "alice", "--from", "c1").splitlines() == [
        "M a.txt  (4 bytes -> 4 bytes)",
        "A b.txt  (2 bytes)",
    ]
    assert "-one\n+two\n" in vfs_ok("diff", "alice", "--from", "c1", "--patch")
    assert vfs_ok("diff", "alice", "--from", "c1", "--to", "c2") == ""
    changes = json.loads(vfs_ok("diff", "alice", "--from", "c1", "--json"))
    assert [(c["kind"], c["path"]) for c in changes] == [
        ("modified", "/a.txt"),
        ("added", "/b.txt"),
    ]
    assert "rolled back" in vfs_ok("rollback", "alice", "c1")
    assert vfs_ok("cat", "alice:/a.txt") == "one\n"
    assert vfs_ok("ls", "alice:/").split() == ["a.txt"]
    assert vfs_ok("checkpoint", "rm", "alice", "c2", "c3") == "deleted 2 checkpoints\n"
    assert [c["name"] for c in json.loads(vfs_ok("checkpoints", "alice", "--json"))] == [
        "c1",
        auto,
    ]
    assert "no such checkpoint" in vfs_error("rollback", "alice", "nope")
    assert "no such checkpoint" in vfs_error("checkpoint", "rm", "alice", "nope")
    assert "bad checkpoint name" in vfs_error("checkpoint", "alice", "a/b")
    assert "exists" in vfs_error("checkpoint", "alice", "c1")
    assert "--to needs --from" in vfs_error("diff", "alice", "--to", "c1")
    assert "no such checkpoint" in vfs_error("diff", "alice", "--from", "nope")
    assert "hybrid" in vfs_error("diff", "alice")  # without --from: the overlay diff


@pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")
@pytest.mark.parametrize("mode", MODES)
def test_rollback_is_refused_while_mounted_and_the_mount_reads_checkpoints(
    make_workspace: Callable[..., Workspace], tmp_path: Path, mode: str
) -> None:
    ws = make_workspace(mode)
    ws.fs.pipe("/a.txt", b"one\n")
    ws.checkpoints.create("c")
    ws.fs.pipe("/a.txt", b"two\n")
    where = tmp_path / "mnt"
    where.mkdir()
    # /.vfs is served by FUSE; a bind mount of a disk workspace is the bare directory.
    vfs_ok("mount", *(["--fuse"] if mode == "disk" else []), "alice", str(where))
    try:
        assert (where / ".vfs" / "checkpoints" / "c" / "a.txt").read_bytes() == b"one\n"
        assert os.listdir(where / ".vfs" / "checkpoints") == ["c"]
        with pytest.raises(OSError) as refused:
            (where / ".vfs" / "checkpoints" / "c" / "a.txt").write_bytes(b"x")
        assert refused.value.errno == errno.EROFS
        message = vfs_error("rollback", "alice", "c")
        assert f"mounted at {where}" in message and "vfs umount" in message
        with pytest.raises(OSError) as busy:
            ws.checkpoints.restore("c")
        assert busy.value.errno == errno.EBUSY
        # Taking a checkpoint while mounted is fine.
        assert vfs_ok("checkpoint", "alice", "while-mounted") == "while-mounted\n"
    finally:
        vfs_ok("umount", str(where))
    ws.checkpoints.restore("c")
    assert ws.fs.cat("/a.txt") == b"one\n"


# -- the file tools ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_file_tools_checkpoint_diff_and_rollback(
    make_workspace: Callable[..., Workspace], mode: str
) -> None:
    from vfs.tools import FileTools, ToolError

    ws = make_workspace(mode)
    tools = FileTools(ws)
    tools.call("write", {"path": "a.txt", "content": "one\n"})
    made = tools.call("checkpoint", {"message": "before edits"})
    assert made["files"] == 1 and made["name"].startswith("cp-")
    tools.call("edit", {"path": "a.txt", "old_string": "one", "new_string": "two"})
    tools.call("write", {"path": "b.txt", "content": "b\n"})
    changes = tools.call("diff", {"checkpoint": made["name"]})["changes"]
    assert [(c["kind"], c["path"]) for c in changes] == [
        ("modified", "/a.txt"),
        ("added", "/b.txt"),
    ]
    assert tools.call("rollback", {"name": made["name"]}) == {"rolled_back_to": made["name"]}
    assert tools.call("read", {"path": "a.txt"})["content"] == "one\n"
    assert tools.call("diff", {"checkpoint": made["name"]})["changes"] == []
    for name, arguments, code in [
        ("rollback", {"name": "nope"}, "not_found"),
        ("diff", {"checkpoint": "nope"}, "not_found"),
        ("checkpoint", {"name": "a/b"}, "invalid_argument"),
        ("checkpoint", {"name": made["name"]}, "already_exists"),
    ]:
        with pytest.raises(ToolError) as caught:
            tools.call(name, arguments)
        assert caught.value.code == code, caught.value.message


def test_garbage_collection_and_doctor_keep_chunks_only_a_checkpoint_uses(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace("sqlite")
    ws.fs.pipe("/only-in-checkpoint.bin", os.urandom(200_000))
    ws.checkpoints.create("c")
    ws.fs.rm("/only-in-checkpoint.bin")
    store = ChunkStore(ws.db)
    assert store.collect_garbage() == 0
    assert store.wrong_refs() == [] and store.fix_refs() == 0 and store.missing() == []
    assert vfs_ok("gc", "alice")
    doctor = run_vfs("doctor", "alice")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    with Workspace.open("alice", ws.home, checkpoint="c") as saved:
        assert len(saved.fs.cat("/only-in-checkpoint.bin")) == 200_000
    ws.checkpoints.restore("c")
    assert len(ws.fs.cat("/only-in-checkpoint.bin")) == 200_000
    assert store.wrong_refs() == []


@pytest.mark.parametrize("mode", ["sqlite", "hybrid"])
def test_a_rollback_is_seen_by_watchers_through_the_change_journal(
    make_workspace: Callable[..., Workspace], mode: str
) -> None:
    ws = make_workspace(mode)
    ws.fs.pipe("/w/kept.txt", b"one")
    ws.checkpoints.create("c")
    ws.fs.pipe("/w/kept.txt", b"two")
    ws.fs.pipe("/w/added.txt", b"x")
    with ws.watch("/w") as watcher:
        watcher.poll()
        ws.checkpoints.restore("c")
        deadline = time.monotonic() + 5
        seen: set[tuple[str, str]] = set()
        while time.monotonic() < deadline and not {"/w/added.txt", "/w/kept.txt"} <= {
            path for _kind, path in seen
        }:
            seen |= {(e.kind, e.path) for e in watcher.poll()}
            time.sleep(0.02)
    assert ("deleted", "/w/added.txt") in seen
    assert any(path == "/w/kept.txt" for _kind, path in seen)
