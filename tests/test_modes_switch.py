"""Switching a workspace's mode moves its data, survives SIGKILL, and refuses while mounted."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.helpers import disk_tree, run_vfs, workspace_tree
from vfs import Workspace
from vfs.settings.switch import switch_mode
from vfs.state.registry import Registry

VFS = Path(sys.executable).with_name("vfs")
FUSE_MISSING = not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None


def view(home: Path, agent: str = "alice") -> dict[str, bytes | None]:
    """Every path of the agent's workspace, as its current mode shows it."""
    with Workspace.open(agent, home) as ws:
        return workspace_tree(ws)


def populate(home: Path, mode: str, agent: str = "alice") -> dict[str, bytes | None]:
    """An agent in ``mode`` holding a small tree (with overlay changes in hybrid mode)."""
    ws = Workspace.create(agent, home, mode=mode)
    try:
        tree = ws.record.workspace
        if mode == "hybrid":
            (tree / "src").mkdir(parents=True)
            (tree / "src" / "lower.py").write_text("lower\n")
            (tree / "drop.txt").write_text("drop")
            (tree / "big.bin").write_bytes(os.urandom(200_000))
        fs = ws.fs
        fs.pipe("notes/today.md", b"# today\n")
        fs.pipe("notes/deep/er.txt", b"x" * 70_000)
        fs.pipe("top.txt", b"top")
        if mode == "hybrid":
            fs.rm("drop.txt")
            backend = ws.files_backend
            with backend.open(backend.resolve("big.bin").ino, os.O_WRONLY) as handle:
                handle.write(100_000, b"changed")
    finally:
        ws.close()
    return view(home, agent)


def file_rows(home: Path) -> int:
    with Workspace.open("alice", home) as ws:
        return int(ws.db.value("SELECT count(*) FROM entries"))


PATHS = [
    ("disk", "sqlite"),
    ("sqlite", "disk"),
    ("hybrid", "disk"),
    ("hybrid", "sqlite"),
    ("disk", "hybrid"),
    ("sqlite", "hybrid"),
]


@pytest.mark.parametrize(("source", "target"), PATHS)
def test_a_switch_moves_the_whole_tree(home, source, target):
    expected = populate(home, source)
    report = switch_mode("alice", target, home)
    assert (report.from_mode, report.to_mode, report.changed) == (source, target, True)
    assert Registry(home).get("alice").mode == target
    assert view(home) == expected
    workspace = Registry(home).get("alice").workspace
    if target != "sqlite":
        assert disk_tree(workspace) == expected  # the disk holds it all, the overlay is empty
        assert file_rows(home) == 0
    else:
        with Workspace.open("alice", home) as ws:
            assert ws.db.value("SELECT count(*) FROM overlay_nodes") == 0


def test_a_round_trip_through_every_mode_keeps_the_tree(home):
    expected = populate(home, "hybrid")
    for mode in ("sqlite", "disk", "hybrid", "sqlite", "hybrid", "disk", "sqlite"):
        switch_mode("alice", mode, home)
        assert view(home) == expected, mode
    assert switch_mode("alice", "sqlite", home).changed is False


def test_hybrid_to_disk_refuses_on_conflicts_unless_forced(home):
    populate(home, "hybrid")
    workspace = Registry(home).get("alice").workspace
    (workspace / "big.bin").write_bytes(b"edited on disk")
    with pytest.raises(OSError, match=r"conflicts: big\.bin"):
        switch_mode("alice", "disk", home)
    assert Registry(home).get("alice").mode == "hybrid"
    assert (workspace / "big.bin").read_bytes() == b"edited on disk"
    switch_mode("alice", "disk", home, force=True)
    assert Registry(home).get("alice").mode == "disk"
    assert (workspace / "big.bin").stat().st_size == 200_000


@pytest.mark.parametrize(("source", "target"), PATHS)
def test_a_switch_killed_at_any_step_leaves_one_whole_mode_and_a_rerun_finishes(
    home, source, target
):
    completed = False
    for kill_after in (1, 2, 3, 5, 8, 13, 40):
        agent = f"agent{kill_after}"
        expected = populate(home, source, agent)
        killed = run_vfs("mode", agent, target, kill_after=kill_after)
        if killed.returncode == 0:
            completed = True  # the switch has fewer steps than this
        else:
            assert killed.returncode == -signal.SIGKILL, killed.stderr
            assert Registry(home).get(agent).mode in (source, target)
            assert view(home, agent) == expected, kill_after
            rerun = run_vfs("mode", agent, target)
            assert rerun.returncode == 0, rerun.stderr
        assert Registry(home).get(agent).mode == target
        assert view(home, agent) == expected, kill_after
        if target != "sqlite":
            assert disk_tree(Registry(home).get(agent).workspace) == expected
    assert completed, "the last kill point should lie beyond the switch's steps"


@pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")
def test_a_switch_is_refused_while_the_agent_is_mounted(home, tmp_path):
    expected = populate(home, "sqlite")
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = run_vfs("mount", "alice", str(where))
    assert mounted.returncode == 0, mounted.stderr
    try:
        refused = run_vfs("mode", "alice", "disk")
        assert refused.returncode == 1
        assert f"mounted at {where}" in refused.stderr
        assert "unmount it first" in refused.stderr
        assert Registry(home).get("alice").mode == "sqlite"
    finally:
        assert run_vfs("umount", str(where)).returncode == 0
    assert run_vfs("mode", "alice", "disk").returncode == 0
    assert view(home) == expected
