"""Listing a directory through fsspec: entry by entry, at a cost per entry that
does not grow with the directory."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from tests.helpers import require_mode
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES


def filesystem(home: Path, mode: str) -> AgentFileSystem:
    require_mode(mode)
    return fsspec.filesystem(
        "agentvfs", agent="alice", home=str(home), create=True, mode=mode, skip_instance_cache=True
    )


def fill(fs: AgentFileSystem, directory: str, count: int) -> None:
    fs.makedirs(directory, exist_ok=True)
    with fs.transaction:
        for i in range(count):
            fs.pipe_file(f"{directory}/f{i:05d}", b"x")


@pytest.mark.parametrize("mode", MODES)
def test_iterdir_yields_what_ls_returns_across_many_pages(home: Path, mode: str) -> None:
    fs = filesystem(home, mode)
    fill(fs, "/big", 1300)  # more than two of the engine's 512-entry pages
    entries = fs.iterdir("/big")
    first = next(entries)
    assert first["name"].startswith("/big/f") and first["type"] == "file"
    rest = list(entries)
    assert [first, *rest] == fs.ls("/big", detail=True)
    assert sorted(fs.ls("/big", detail=False)) == [f"/big/f{i:05d}" for i in range(1300)]
    assert list(fs.iterdir("/big/f00007", detail=False)) == ["/big/f00007"]


@pytest.mark.parametrize("mode", ["sqlite", "hybrid"])
def test_listing_costs_the_same_per_entry_in_a_large_directory(home: Path, mode: str) -> None:
    """Counted in SQLite virtual-machine steps, not time: a page that sorted the whole
    directory made the per-entry cost grow with the directory's size."""
    fs = filesystem(home, mode)
    fill(fs, "/small", 1000)
    fill(fs, "/large", 8000)
    conn = fs.workspace.db.conn
    steps = [0]

    def count() -> bool:
        steps[0] += 1
        return False  # False: carry on

    def per_entry(directory: str) -> float:
        steps[0] = 0
        conn.set_progress_handler(count, 100)
        try:
            listed = sum(1 for _ in fs.iterdir(directory, detail=False))
        finally:
            conn.set_progress_handler(None)
        return steps[0] / listed

    small, large = per_entry("/small"), per_entry("/large")
    assert large < 1.5 * small, (small, large)
