"""Opening a workspace honours the mode its data is in, and switches keep what they move."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import fsspec
import pytest

import vfs.settings.switch as vfs_modes
from tests.helpers import run_vfs
from vfs import Workspace
from vfs.backends.hybrid.commit import conflicts
from vfs.settings.config import ModeMismatch
from vfs.settings.switch import switch_mode
from vfs.state.registry import Registry

VFS = Path(sys.executable).with_name("vfs")


def test_an_explicit_mode_other_than_the_agents_is_refused_naming_the_switch(home):
    with Workspace.create("alice", home, mode="hybrid") as ws:
        (ws.record.workspace / "lower.txt").write_text("on disk")
        ws.fs.pipe("upper.txt", b"in the overlay")
    for other in ("sqlite", "disk"):
        with pytest.raises(ModeMismatch, match=f"hybrid mode.*`vfs mode alice {other}`"):
            Workspace.open("alice", home, mode=other)
        with pytest.raises(ModeMismatch, match="in hybrid mode"):
            fsspec.filesystem(
                "agentvfs", agent="alice", home=str(home), create=True, mode=other,
                skip_instance_cache=True,
            )  # fmt: skip
    assert Registry(home).get("alice").mode == "hybrid"
    with Workspace.open("alice", home, mode="hybrid") as ws:
        assert ws.fs.cat("upper.txt") == b"in the overlay"
        assert ws.fs.cat("lower.txt") == b"on disk"


def test_an_explicit_mode_still_creates_a_new_agent_and_reopens_it(home):
    fs = fsspec.filesystem(
        "agentvfs", agent="bob", home=str(home), create=True, mode="disk",
        skip_instance_cache=True,
    )  # fmt: skip
    fs.pipe("a.txt", b"a")
    fs.workspace.close()
    with Workspace.open("bob", home, create=True, mode="disk") as ws:
        assert ws.mode == "disk" and ws.fs.cat("a.txt") == b"a"


def test_writes_after_a_switch_killed_past_the_flip_survive_the_next_switch(home):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("keep.txt", b"kept")
    killed = run_vfs("mode", "alice", "hybrid", kill_after=4)  # after the registry flip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert Registry(home).get("alice").mode == "hybrid"
    with Workspace.open("alice", home) as ws:
        assert ws.mode == "hybrid"
        ws.fs.pipe("agent_work.txt", b"new work")
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("agent_work.txt") == b"new work"
    switched = run_vfs("mode", "alice", "disk")
    assert switched.returncode == 0, switched.stderr
    workspace = Registry(home).get("alice").workspace
    assert (workspace / "agent_work.txt").read_bytes() == b"new work"
    assert (workspace / "keep.txt").read_bytes() == b"kept"


def test_a_disk_edit_between_the_conflict_check_and_the_commit_refuses_the_switch(
    home, monkeypatch
):
    with Workspace.create("alice", home, mode="hybrid") as ws:
        lower = ws.record.workspace / "f.txt"
        lower.write_text("lower")
        ws.fs.pipe("f.txt", b"overlay edit")

    def check_then_edit_on_disk(backend, paths=None):  # another process writes just after
        found = conflicts(backend, paths)
        lower.write_text("edited on disk meanwhile")
        return found

    monkeypatch.setattr(vfs_modes, "conflicts", check_then_edit_on_disk)
    with pytest.raises(OSError, match=r"conflicts: f\.txt"):
        switch_mode("alice", "disk", home)
    assert Registry(home).get("alice").mode == "hybrid"
    assert lower.read_text() == "edited on disk meanwhile"
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("f.txt") == b"overlay edit"


OLD_NS = 1_000_000_000 * 10**9  # 2001-09-09, far from any time a test runs at


def dated_tree(ws: Workspace) -> list[str]:
    """Directories, a file and a symlink, each with its own old mtime; returns their paths."""
    ws.fs.pipe("d/sub/f.txt", b"f")
    backend = ws.files_backend
    backend.symlink(backend.resolve("d").ino, "link", b"sub/f.txt")
    paths = ["d/sub/f.txt", "d/link", "d/sub", "d"]  # children first: their times stay put
    for offset, path in enumerate(paths):
        backend.setattr(backend.resolve(path).ino, mtime_ns=OLD_NS + offset * 10**9)
    return paths


def mtimes_in(ws: Workspace, paths: list[str]) -> dict[str, int]:
    backend = ws.files_backend
    return {path: backend.getattr(backend.resolve(path).ino).mtime_ns for path in paths}


def test_switches_keep_directory_and_symlink_mtimes_both_ways(home):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        paths = dated_tree(ws)
        expected = mtimes_in(ws, paths)
    assert sorted(expected.values()) == [OLD_NS + i * 10**9 for i in range(4)]
    switch_mode("alice", "disk", home)  # export
    workspace = Registry(home).get("alice").workspace
    on_disk = {path: os.lstat(workspace / path).st_mtime_ns for path in paths}
    assert on_disk == expected
    switch_mode("alice", "sqlite", home)  # import
    with Workspace.open("alice", home) as ws:
        assert mtimes_in(ws, paths) == expected
