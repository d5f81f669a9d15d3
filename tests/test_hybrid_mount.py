"""A hybrid agent through a real FUSE mount: programs change the overlay, never the disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.backends.hybrid.diff import scan

VFS = Path(sys.executable).with_name("vfs")
pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="FUSE (/dev/fuse, fusermount3) is absent",
)


def vfs(*args: str) -> None:
    done = subprocess.run([str(VFS), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_changes_made_through_a_mount_land_in_the_overlay_until_commit(home, tmp_path):
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "app.py").write_text("print(1)\n")
    (tree / "README").write_text("readme\n")
    Workspace.create("alice", home, mode="hybrid", workspace=tree).close()
    where = tmp_path / "mnt"
    where.mkdir()
    vfs("mount", "alice", str(where), "--cache-timeout", "0")
    try:
        assert (where / "src" / "app.py").read_text() == "print(1)\n"
        with open(where / "src" / "app.py", "a") as stream:
            stream.write("print(2)\n")
        (where / "notes").mkdir()
        (where / "notes" / "todo.md").write_text("- commit\n")
        os.rename(where / "README", where / "README.md")
        os.chmod(where / "src" / "app.py", 0o600)
        assert sorted(os.listdir(where)) == ["README.md", "notes", "src"]
        assert (where / "src" / "app.py").read_text() == "print(1)\nprint(2)\n"
        inode = os.stat(where / "src" / "app.py").st_ino
        assert os.stat(where / "src" / "app.py").st_ino == inode
    finally:
        vfs("umount", str(where))
    assert (tree / "src" / "app.py").read_text() == "print(1)\n"
    assert (tree / "README").exists() and not (tree / "notes").exists()
    with Workspace.open("alice", home) as ws:
        kinds = {(c.kind, c.path) for c in scan(ws.files_backend).changes}
    assert {("modified", "src/app.py"), ("added", "notes"), ("renamed", "README.md")} <= kinds
    vfs("commit", "alice")
    assert (tree / "src" / "app.py").read_text() == "print(1)\nprint(2)\n"
    assert (tree / "src" / "app.py").stat().st_mode & 0o777 == 0o600
    assert (tree / "notes" / "todo.md").read_text() == "- commit\n"
    assert sorted(os.listdir(tree)) == ["README.md", "notes", "src"]


def test_what_the_mount_created_follows_the_disk_once_committed(home, tmp_path):
    """The mount caches what it created for long; a commit by another process
    moves it to the disk tree, whose direct edits then show as for any disk file."""
    tree = tmp_path / "tree"
    tree.mkdir()
    Workspace.create("alice", home, mode="hybrid", workspace=tree).close()
    where = tmp_path / "mnt"
    where.mkdir()
    vfs("mount", "alice", str(where))
    try:
        (where / "made").mkdir()
        (where / "made" / "f").write_text("mine\n")
        assert (where / "made" / "f").read_text() == "mine\n"
        vfs("commit", "alice")
        with open(tree / "made" / "f", "a") as stream:
            stream.write("edited on disk\n")
        (tree / "made" / "g").write_text("new on disk\n")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen = (where / "made" / "f").read_text(), (where / "made" / "g").exists()
            if seen == ("mine\nedited on disk\n", True):
                break
            time.sleep(0.05)
        assert (where / "made" / "f").read_text() == "mine\nedited on disk\n"
        assert (where / "made" / "g").read_text() == "new on disk\n"
    finally:
        vfs("umount", str(where))
