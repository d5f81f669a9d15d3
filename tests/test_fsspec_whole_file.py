"""Whole-file writes through fsspec (``pipe_file``): the engines' one-call paths keep
every rule of the name-by-name walk, and sqlite mode does it in one transaction
of a few statements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest

from tests.helpers import require_mode
from vfs.backends.base import ROOT_INO
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES


@pytest.fixture(params=MODES)
def fs(request: pytest.FixtureRequest, home: Path) -> AgentFileSystem:
    require_mode(request.param)
    return fsspec.filesystem(
        "agentvfs", agent="alice", home=str(home), create=True, mode=request.param,
        skip_instance_cache=True,
    )  # fmt: skip


def test_writing_a_final_symlink_writes_through_it(fs: AgentFileSystem) -> None:
    fs.pipe_file("/real/target.txt", b"old")
    fs.symlink("real/target.txt", "/link")
    fs.pipe_file("/link", b"new")
    assert fs.islink("/link")
    assert fs.cat_file("/real/target.txt") == b"new"


def test_writing_below_a_directory_symlink_writes_into_its_target(fs: AgentFileSystem) -> None:
    fs.makedirs("/real")
    fs.symlink("real", "/alias")
    fs.pipe_file("/alias/f.txt", b"through")
    assert fs.cat_file("/real/f.txt") == b"through"
    assert fs.islink("/alias")


def test_writing_over_a_directory_fails_and_keeps_it(fs: AgentFileSystem) -> None:
    fs.pipe_file("/d/inner.txt", b"kept")
    with pytest.raises(IsADirectoryError):
        fs.pipe_file("/d", b"file")
    assert fs.cat_file("/d/inner.txt") == b"kept"


def test_create_mode_refuses_an_existing_file_and_keeps_it(fs: AgentFileSystem) -> None:
    fs.pipe_file("/f.txt", b"first")
    with pytest.raises(FileExistsError):
        fs.pipe_file("/f.txt", b"second", mode="create")
    assert fs.cat_file("/f.txt") == b"first"
    fs.pipe_file("/g.txt", b"fresh", mode="create")
    assert fs.cat_file("/g.txt") == b"fresh"


def test_writing_below_a_file_fails(fs: AgentFileSystem) -> None:
    fs.pipe_file("/plain", b"x")
    with pytest.raises(NotADirectoryError):
        fs.pipe_file("/plain/child", b"y")


def test_replacing_a_file_frees_the_old_content_and_creates_missing_directories(
    fs: AgentFileSystem,
) -> None:
    fs.pipe_file("/a/b/c.txt", b"one")
    fs.pipe_file("/a/b/c.txt", b"two")
    assert fs.cat_file("/a/b/c.txt") == b"two"
    assert fs.ls("/a/b", detail=False) == ["/a/b/c.txt"]
    if fs.workspace.mode != "disk":
        db = fs.workspace.db
        assert db.value("SELECT count(*) FROM inodes WHERE nlink = 0") == 0


def test_a_transaction_publishes_every_file_at_its_end(fs: AgentFileSystem) -> None:
    with fs.transaction:
        for i in range(20):
            fs.pipe_file(f"/tx/f{i}", f"content {i}".encode())
    assert [fs.cat_file(f"/tx/f{i}") for i in range(20)] == [
        f"content {i}".encode() for i in range(20)
    ]
    if fs.workspace.mode == "disk":
        leftovers = [p for p in fs.workspace.record.workspace.rglob(".agentvfs-tmp-*")]
        assert leftovers == []


# -- sqlite mode: statements per operation -----------------------------------------


def statements(fs: AgentFileSystem, operation: Callable[[], object]) -> list[str]:
    """The SQL statements ``operation`` runs on this thread's connection."""
    seen: list[str] = []

    def trace(cursor: object, sql: str, bindings: object) -> bool:
        seen.append(sql)
        return True

    conn = fs.workspace.db.conn
    conn.exec_trace = trace
    try:
        operation()
    finally:
        conn.exec_trace = None
    return seen


@pytest.fixture
def sqlite_fs(home: Path) -> AgentFileSystem:
    return fsspec.filesystem(
        "agentvfs", agent="bob", home=str(home), create=True, mode="sqlite",
        skip_instance_cache=True,
    )  # fmt: skip


def test_a_new_small_file_is_one_transaction_of_at_most_twelve_statements(
    sqlite_fs: AgentFileSystem,
) -> None:
    sqlite_fs.makedirs("/d/e")
    seen = statements(sqlite_fs, lambda: sqlite_fs.pipe_file("/d/e/new.txt", b"x" * 4096))
    assert sum(s.startswith("BEGIN") for s in seen) == 1
    assert len(seen) <= 12, seen
    seen = statements(sqlite_fs, lambda: sqlite_fs.pipe_file("/d/e/new.txt", b"y" * 4096))
    assert len(seen) <= 14, seen  # a replace also drops the old inode
    assert sqlite_fs.cat_file("/d/e/new.txt") == b"y" * 4096


def test_create_and_unlink_take_at_most_nine_and_eight_statements(
    sqlite_fs: AgentFileSystem,
) -> None:
    backend = sqlite_fs.backend
    opened = []
    seen = statements(sqlite_fs, lambda: opened.append(backend.create(ROOT_INO, "f", 0o644)[0]))
    assert len(seen) <= 9, seen
    opened[0].close()
    seen = statements(sqlite_fs, lambda: backend.unlink(ROOT_INO, "f"))
    assert len(seen) <= 8, seen
    assert not sqlite_fs.exists("/f")
    assert sqlite_fs.workspace.db.value("SELECT count(*) FROM inodes WHERE nlink = 0") == 0
