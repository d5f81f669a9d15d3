"""A commit killed with SIGKILL at any step loses nothing; running it again finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import disk_tree, run_vfs, workspace_tree
from vfs import Workspace
from vfs.backends.hybrid.diff import scan


def make_changes(home: Path, tree: Path, agent: str) -> dict[str, bytes | None]:
    (tree / "keep" / "deep").mkdir(parents=True)
    (tree / "keep" / "deep" / "a.txt").write_bytes(b"a" * 100_000)
    (tree / "keep" / "b.txt").write_text("b")
    (tree / "old").mkdir()
    (tree / "old" / "c.txt").write_text("c")
    (tree / "gone.txt").write_text("gone")
    (tree / "edit.txt").write_text("before")
    with Workspace.create(agent, home, mode="hybrid", workspace=tree) as ws:
        fs = ws.fs
        fs.pipe("edit.txt", b"after")
        fs.rm("gone.txt")
        fs.mv("keep", "moved", recursive=True)
        backend = ws.files_backend
        with backend.open(backend.resolve("moved/deep/a.txt").ino, os.O_WRONLY) as handle:
            handle.write(50_000, b"Z")
        fs.pipe("new/one.txt", b"one")
        fs.pipe("new/two.txt", b"two")
        fs.rm("old", recursive=True)
        fs.mkdir("old")
        fs.pipe("old/d.txt", b"d")
        return workspace_tree(ws)


@pytest.mark.parametrize("kill_after", [1, 3, 7, 12, 17, 19, 24, 29, 31, 33])
def test_commit_killed_at_any_step_is_finished_by_the_next_commit(home, tmp_path, kill_after):
    tree = tmp_path / "tree"
    expected = make_changes(home, tree, "alice")
    killed = run_vfs("commit", "alice", kill_after=kill_after)
    assert killed.returncode in (0, -signal.SIGKILL), killed.stderr
    # Whatever happened, the merged view still shows every change.
    with Workspace.open("alice", home) as ws:
        assert workspace_tree(ws) == expected
    finished = run_vfs("commit", "alice")
    assert finished.returncode == 0, finished.stderr
    assert disk_tree(tree) == expected
    with Workspace.open("alice", home) as ws:
        assert scan(ws.files_backend).changes == []
        assert workspace_tree(ws) == expected


def test_two_commits_at_once_apply_every_change_once(home, tmp_path):
    tree = tmp_path / "tree"
    expected = make_changes(home, tree, "alice")
    commits = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("vfs")), "commit", "alice"], stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for process in commits:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert disk_tree(tree) == expected
    with Workspace.open("alice", home) as ws:
        assert scan(ws.files_backend).changes == []
