"""The AgentFileSystem contract beyond fsspec's abstract suites."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from tests.helpers import require_mode, run_python
from vfs import Workspace
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES


@pytest.fixture(params=MODES)
def fs(request: pytest.FixtureRequest, home: Path) -> AgentFileSystem:
    require_mode(request.param)
    return fsspec.filesystem(
        "agentvfs",
        agent="alice",
        home=str(home),
        create=True,
        mode=request.param,
        skip_instance_cache=True,
    )


def test_url_open_writes_and_reads_through_the_registered_protocol(home: Path) -> None:
    Workspace.create("alice", home)
    with fsspec.open("agentvfs://alice/notes/todo.md", "w", home=str(home)) as f:
        f.write("buy milk")
    with fsspec.open("agentvfs://alice/notes/todo.md", "r", home=str(home)) as f:
        assert f.read() == "buy milk"
    fs, path = fsspec.core.url_to_fs("agentvfs://alice/notes/todo.md", home=str(home))
    # The path fsspec hands back keeps its agent; the filesystem's own names do not.
    assert path == "agentvfs://alice/notes/todo.md"
    assert fs.info(path)["name"] == "/notes/todo.md"
    assert fs.unstrip_protocol("/notes/todo.md") == "agentvfs://alice/notes/todo.md"


def test_filesystem_is_registered_by_entry_point() -> None:
    assert fsspec.get_filesystem_class("agentvfs") is AgentFileSystem


def test_unknown_agent_without_create_names_the_agent(home: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ghost"):
        fsspec.filesystem("agentvfs", agent="ghost", home=str(home), skip_instance_cache=True)
    assert not (home / "agents" / "ghost").exists()


def test_create_uses_the_requested_mode(home: Path) -> None:
    require_mode("disk")
    fsspec.filesystem(
        "agentvfs", agent="d1", home=str(home), create=True, mode="disk", skip_instance_cache=True
    ).pipe("/a.txt", b"on disk")
    assert (home / "agents" / "d1" / "workspace" / "a.txt").read_bytes() == b"on disk"


def test_info_carries_stat_fields(fs: AgentFileSystem) -> None:
    fs.pipe("/dir/file.bin", b"x" * 1000)
    info = fs.info("/dir/file.bin")
    for key in ("name", "size", "type", "mode", "uid", "gid", "mtime", "created", "ino", "nlink"):
        assert key in info, key
    assert info["name"] == "/dir/file.bin"
    assert info["size"] == 1000
    assert info["type"] == "file"
    assert info["nlink"] == 1
    assert fs.info("/dir")["type"] == "directory"


def test_symlink_info_has_destination_and_reads_follow_it(fs: AgentFileSystem) -> None:
    fs.pipe("/real/target.txt", b"payload")
    fs.symlink("real/target.txt", "/link")
    info = fs.info("/link")
    assert info["islink"] is True
    assert info["destination"] == "real/target.txt"
    assert info["type"] == "file"
    assert fs.cat("/link") == b"payload"


def test_checksum_follows_content(fs: AgentFileSystem) -> None:
    fs.pipe("/a", b"same content" * 10000)
    fs.pipe("/b", b"same content" * 10000)
    fs.pipe("/c", b"other content" * 10000)
    assert fs.checksum("/a") == fs.checksum("/b")
    assert fs.checksum("/a") != fs.checksum("/c")
    before = fs.ukey("/a")
    with fs.open("/a", "ab") as f:
        f.write(b"!")
    assert fs.ukey("/a") != before


def test_ranged_reads_return_exact_slices(fs: AgentFileSystem) -> None:
    data = bytes(range(256)) * 2000  # 512,000 bytes over several chunks
    fs.pipe("/big", data)
    assert fs.cat_file("/big", start=70000, end=200001) == data[70000:200001]
    assert fs.cat_file("/big", start=-10) == data[-10:]
    with fs.open("/big", "rb", block_size=4096) as f:
        f.seek(131071)
        assert f.read(3) == data[131071:131074]


def test_writes_at_offsets_leave_holes_as_zeros(fs: AgentFileSystem) -> None:
    fs.pipe("/sparse", b"start")
    backend = fs.backend
    attr = fs._resolve("/sparse")
    with backend.open(attr.ino, 2) as handle:
        handle.write(300_000, b"end")
    data = fs.cat("/sparse")
    assert len(data) == 300_003
    assert data[:5] == b"start" and data[-3:] == b"end"
    assert data[5:300_000] == bytes(299_995)


def test_cp_file_within_an_agent_shares_chunks(home: Path) -> None:
    ws = Workspace.create("alice", home)
    fs = ws.fs
    fs.pipe("/original", bytes(range(251)) * 4000)
    chunks_before = ws.db.value("SELECT count(*) FROM chunks")
    bytes_before = ws.db.value("SELECT sum(size) FROM chunks")
    fs.cp_file("/original", "/copy")
    assert fs.cat("/copy") == fs.cat("/original")
    assert ws.db.value("SELECT count(*) FROM chunks") == chunks_before
    assert ws.db.value("SELECT sum(size) FROM chunks") == bytes_before
    assert ws.db.value("SELECT min(refs) FROM chunks") == 2
    ws.close()


def test_transaction_commits_every_write_or_none(fs: AgentFileSystem) -> None:
    with fs.transaction:
        for i in range(20):
            fs.pipe(f"/tx/file{i}", f"content {i}".encode())
    assert sorted(fs.ls("/tx", detail=False)) == sorted(f"/tx/file{i}" for i in range(20))

    with pytest.raises(RuntimeError), fs.transaction:
        for i in range(20):
            fs.pipe(f"/rolled/file{i}", b"never")
        with fs.open("/tx/file0", "wb") as f:
            f.write(b"changed")
        raise RuntimeError("abort the block")
    assert not fs.exists("/rolled/file0")
    assert fs.cat("/tx/file0") == b"content 0"


def test_sqlite_transaction_is_invisible_to_other_processes_until_commit(home: Path) -> None:
    ws = Workspace.create("alice", home)
    fs = ws.fs
    reader = (
        "import json, sys\n"
        "from vfs import Workspace\n"
        f"ws = Workspace.open('alice', {str(home)!r})\n"
        "print(json.dumps(ws.fs.exists('/tx/a')))\n"
    )
    with fs.transaction:
        fs.pipe("/tx/a", b"1")
        fs.pipe("/tx/b", b"2")
        # The writer holds the write lock; WAL readers still see the last commit.
        assert json.loads(run_python(reader)) is False
    assert json.loads(run_python(reader)) is True
    ws.close()


def test_one_gib_round_trip_keeps_memory_bounded(home: Path) -> None:
    """Stream 1 GiB in and out through fsspec in a fresh process; peak RSS stays small."""
    code = f"""
import hashlib, os
from vfs import Workspace
ws = Workspace.create("big", {str(home)!r})
fs = ws.fs
block = bytearray(os.urandom(1 << 20))
written = hashlib.sha256()
with fs.open("/huge.bin", "wb") as f:
    for i in range(1024):
        block[:8] = i.to_bytes(8, "little")
        written.update(block)
        f.write(block)
read = hashlib.sha256()
with fs.open("/huge.bin", "rb") as f:
    while chunk := f.read(4 << 20):
        read.update(chunk)
assert fs.size("/huge.bin") == 1 << 30
assert read.digest() == written.digest()
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across
# a vfork and exec, so a large test runner would be measured instead of us.
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""
    peak_mib = int(run_python(code, timeout=300))
    assert peak_mib < 100, f"peak RSS {peak_mib} MiB"


def test_recursive_remove_never_follows_a_directory_symlink(fs: AgentFileSystem) -> None:
    fs.pipe("/keep/precious.txt", b"do not delete")
    fs.makedirs("/trash")
    fs.symlink("../keep", "/trash/link")
    fs.symlink(".", "/trash/self")
    assert sorted(fs.find("/trash", withdirs=True)) == ["/trash", "/trash/link", "/trash/self"]
    fs.rm("/trash", recursive=True)
    assert not fs.exists("/trash")
    assert fs.cat("/keep/precious.txt") == b"do not delete"


def test_writing_through_a_link_lands_where_reading_it_does(fs: AgentFileSystem) -> None:
    fs.pipe("/deep/g", b"original")
    fs.makedirs("/deep/er")
    fs.symlink("deep/er", "/sl")
    fs.symlink("../g", "/deep/er/f")
    assert fs.cat("/sl/f") == b"original"
    fs.pipe("/sl/f", b"rewritten")
    assert fs.cat("/deep/g") == b"rewritten"
    assert not fs.exists("/g")
