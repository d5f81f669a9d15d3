"""sqlite mode's storage engine: chunks, holes, links, renames, orphans."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.backends.base import ROOT_INO
from vfs.backends.chunks import chunk_hash
from vfs.backends.sqlite.backend import SqliteBackend


@pytest.fixture
def ws(home: Path) -> Workspace:
    workspace = Workspace.create("alice", home)
    yield workspace
    workspace.close()


@pytest.fixture
def backend(ws: Workspace) -> SqliteBackend:
    return SqliteBackend(ws.db)


def write_file(backend: SqliteBackend, name: str, data: bytes, parent: int = ROOT_INO) -> int:
    handle, attr = backend.create(parent, name, 0o644)
    handle.write(0, data)
    handle.close()
    return attr.ino


def read_all(backend: SqliteBackend, ino: int) -> bytes:
    with backend.open(ino) as handle:
        return handle.read(0, backend.getattr(ino).size)


def test_hash_collision_never_shares_a_chunk(ws: Workspace, backend: SqliteBackend) -> None:
    data = b"genuine content" * 100
    # Plant a chunk whose hash equals data's hash but whose bytes differ.
    ws.db.execute(
        "INSERT INTO chunks (hash, size, refs, data) VALUES (?, ?, 1, ?)",
        (chunk_hash(data), len(data), b"impostor bytes!" * 100),
    )
    ino = write_file(backend, "f", data)
    assert read_all(backend, ino) == data
    assert ws.db.value("SELECT count(*) FROM chunks WHERE hash = ?", (chunk_hash(data),)) == 2


def test_identical_chunks_are_stored_once_and_freed_with_the_last_reference(
    ws: Workspace, backend: SqliteBackend
) -> None:
    data = os.urandom(200_000)
    a = write_file(backend, "a", data)
    write_file(backend, "b", data)
    assert ws.db.value("SELECT count(*) FROM chunks") == 4
    assert ws.db.value("SELECT min(refs) FROM chunks") == 2
    backend.unlink(ROOT_INO, "a")
    assert ws.db.value("SELECT max(refs) FROM chunks") == 1
    backend.unlink(ROOT_INO, "b")
    assert ws.db.value("SELECT count(*) FROM chunks") == 0
    with pytest.raises(FileNotFoundError):
        backend.getattr(a)


def test_small_write_into_large_file_touches_one_chunk(
    ws: Workspace, backend: SqliteBackend
) -> None:
    ino = write_file(backend, "big", os.urandom(1 << 20))
    ids_before = {r[0] for r in ws.db.query("SELECT chunk FROM file_chunks WHERE ino = ?", (ino,))}
    with backend.open(ino, os.O_RDWR) as handle:
        handle.write(300_000, b"X")
    ids_after = {r[0] for r in ws.db.query("SELECT chunk FROM file_chunks WHERE ino = ?", (ino,))}
    assert len(ids_before - ids_after) == 1
    assert read_all(backend, ino)[300_000:300_001] == b"X"


def test_sparse_file_stores_no_chunks_for_holes(ws: Workspace, backend: SqliteBackend) -> None:
    handle, attr = backend.create(ROOT_INO, "sparse", 0o644)
    handle.write(10 << 20, b"tail")
    handle.close()
    assert backend.getattr(attr.ino).size == (10 << 20) + 4
    assert ws.db.value("SELECT count(*) FROM file_chunks WHERE ino = ?", (attr.ino,)) == 1
    with backend.open(attr.ino) as h:
        assert h.read(5 << 20, 8) == bytes(8)
        assert h.read((10 << 20) - 2, 10) == b"\0\0tail"


def test_an_unlinked_open_file_is_freed_at_its_last_close(
    ws: Workspace, backend: SqliteBackend
) -> None:
    ino = write_file(backend, "doomed", b"still here")
    handle = backend.open(ino, os.O_RDWR)
    backend.unlink(ROOT_INO, "doomed")
    handle.write(10, b" and writable")
    assert ws.db.value("SELECT count(*) FROM inodes WHERE ino = ?", (ino,)) == 1
    handle.close()
    assert ws.db.value("SELECT count(*) FROM inodes WHERE ino = ?", (ino,)) == 0
    assert ws.db.value("SELECT count(*) FROM chunks") == 0


def test_read_only_backend_refuses_writes(home: Path) -> None:
    Workspace.create("ro", home).fs.pipe("/a", b"1")
    ws = Workspace.open("ro", home, read_only=True)
    with pytest.raises(OSError) as info:
        ws.fs.pipe("/b", b"2")
    assert info.value.errno == errno.EROFS
    assert ws.fs.cat("/a") == b"1"
    ws.close()


def test_database_files_are_private(ws: Workspace) -> None:
    ws.fs.pipe("/x", b"1")
    for path in ws.record.db_path.parent.glob("agent.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((ws.home / "state.sqlite").stat().st_mode) == 0o600


def test_migrations_are_recorded(ws: Workspace) -> None:
    versions = [r[0] for r in ws.db.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions[0] == 1
    assert ws.db.value("PRAGMA user_version") == versions[-1]
    assert ws.db.value("PRAGMA journal_mode") == "wal"
    assert ws.db.value("PRAGMA foreign_keys") == 1


def test_two_handles_writing_one_chunk_keep_both_writes(backend: SqliteBackend) -> None:
    ino = write_file(backend, "shared", b"A" * 100)
    first = backend.open(ino, os.O_RDWR)
    second = backend.open(ino, os.O_RDWR)
    first.write(0, b"11111")
    second.write(50, b"22222")
    first.close()
    second.close()
    data = read_all(backend, ino)
    assert data[:5] == b"11111" and data[50:55] == b"22222"
    assert data[5:50] == b"A" * 45 and data[55:] == b"A" * 45


def test_writes_from_two_processes_to_one_chunk_both_land(ws: Workspace) -> None:
    from tests.helpers import run_python

    ws.fs.pipe("/shared", b"." * 1000)
    ino = ws.fs.info("/shared")["ino"]
    handle = ws.files_backend.open(ino, os.O_RDWR)
    handle.write(0, b"PARENT")
    run_python(
        "import os\nfrom vfs import Workspace\n"
        f"ws = Workspace.open('alice', {str(ws.home)!r})\n"
        f"h = ws.files_backend.open({ino}, os.O_RDWR)\n"
        "h.write(500, b'CHILD')\nh.close()\n"
    )
    handle.close()
    data = ws.fs.cat("/shared")
    assert data[:6] == b"PARENT" and data[500:505] == b"CHILD"


def test_inode_numbers_are_never_reused(ws: Workspace, backend: SqliteBackend) -> None:
    first = write_file(backend, "a", b"1")
    backend.unlink(ROOT_INO, "a")
    second = write_file(backend, "b", b"2")
    assert second > first
    with pytest.raises(FileNotFoundError):
        backend.getattr(first)


def test_getattr_shows_buffered_writes_without_committing_them(
    ws: Workspace, backend: SqliteBackend
) -> None:
    handle, attr = backend.create(ROOT_INO, "growing", 0o644)
    handle.write(0, b"x" * 5000)
    assert backend.getattr(attr.ino).size == 5000
    assert ws.db.value("SELECT size FROM inodes WHERE ino = ?", (attr.ino,)) == 0
    handle.close()
    assert ws.db.value("SELECT size FROM inodes WHERE ino = ?", (attr.ino,)) == 5000


def test_append_handles_follow_each_others_buffered_writes(backend: SqliteBackend) -> None:
    _, attr = backend.create(ROOT_INO, "log", 0o644)
    first = backend.open(attr.ino, os.O_WRONLY | os.O_APPEND)
    second = backend.open(attr.ino, os.O_WRONLY | os.O_APPEND)
    first.write(0, b"AAAA")
    second.write(0, b"BB")
    first.write(0, b"C")
    first.close()
    second.close()
    assert read_all(backend, attr.ino) == b"AAAABBC"


def test_truncating_open_discards_other_handles_buffered_writes(backend: SqliteBackend) -> None:
    handle, attr = backend.create(ROOT_INO, "t", 0o644)
    handle.write(0, b"hello world")
    backend.open(attr.ino, os.O_WRONLY | os.O_TRUNC).close()
    assert backend.getattr(attr.ino).size == 0
    handle.close()
    assert read_all(backend, attr.ino) == b""


def test_file_open_in_another_process_survives_unlink_here(ws: Workspace) -> None:
    import subprocess
    import sys

    from tests.helpers import REPO

    ws.fs.pipe("/held.txt", b"still readable")
    ino = ws.fs.info("/held.txt")["ino"]
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom vfs import Workspace\n"
         f"ws = Workspace.open('alice', {str(ws.home)!r})\n"
         f"h = ws.files_backend.open({ino})\n"
         "print('open', flush=True)\nsys.stdin.readline()\n"
         "print(h.read(0, 100).decode(), flush=True)\nh.close()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "open"
    ws.fs.rm("/held.txt")
    ws.fs.pipe("/other.txt", b"a new file")  # must not reuse or disturb the held inode
    ws.backend.reclaim_orphans()  # must not free what another process holds
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "still readable"
    assert holder.wait(timeout=30) == 0
    # The holder's close freed it.
    assert ws.db.value("SELECT count(*) FROM inodes WHERE ino = ?", (ino,)) == 0


def test_limits_match_a_local_filesystem(backend: SqliteBackend) -> None:
    ino = write_file(backend, "limits", b"")
    with pytest.raises(OSError) as info:
        backend.setxattr(ino, b"user." + b"a" * 300, b"1")
    assert info.value.errno == errno.ERANGE
    with backend.open(ino, os.O_RDWR) as handle, pytest.raises(OSError) as info:
        handle.write(1 << 44, b"x")
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        backend.setattr(ino, size=1 << 62)
    assert info.value.errno == errno.EFBIG
