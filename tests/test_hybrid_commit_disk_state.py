"""Commit and discard leave the user's disk tree alone except where the overlay changed it,
and see every disk edit made behind the overlay's back, and nothing else."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import disk_tree, run_vfs
from vfs import Workspace
from vfs.backends.hybrid.commit import commit, discard
from vfs.backends.hybrid.diff import scan


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("main\n")
    (root / "notes.txt").write_text("one\ntwo\n")
    # a directory of the user's that happens to carry the name commit once staged in
    (root / ".agentvfs-commit").mkdir()
    (root / ".agentvfs-commit" / "keep.txt").write_text("mine")
    return root


def test_a_users_directory_named_like_commit_staging_shows_and_survives_commit_and_discard(
    make_workspace, tree
):
    ws = make_workspace("hybrid", workspace=tree)
    assert ws.fs.cat(".agentvfs-commit/keep.txt") == b"mine"
    ws.fs.pipe("added.txt", b"added")
    ws.fs.pipe("notes.txt", b"changed\n")
    assert commit(ws.files_backend).conflicts == []
    assert (tree / ".agentvfs-commit" / "keep.txt").read_text() == "mine"
    assert (tree / "added.txt").read_text() == "added"
    assert sorted(os.listdir(tree)) == [".agentvfs-commit", "added.txt", "notes.txt", "src"]
    ws.fs.pipe("other.txt", b"other")
    assert discard(ws.files_backend) == 1
    assert (tree / ".agentvfs-commit" / "keep.txt").read_text() == "mine"


def test_commit_and_discard_through_the_cli_keep_a_users_directory_named_like_staging(home, tree):
    with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
        ws.fs.pipe("src/new.py", b"new")
    before = disk_tree(tree)
    killed = run_vfs("commit", "alice", kill_after=2)  # staged, nothing placed yet
    assert killed.returncode == -9, killed.stderr
    assert disk_tree(tree) == before  # staging is in the agent's own directory
    assert os.listdir(home / "agents" / "alice" / "commit-staging") == ["1"]
    result = run_vfs("commit", "alice")
    assert result.returncode == 0, result.stderr
    assert disk_tree(tree) == {**before, "src/new.py": b"new"}
    assert not (home / "agents" / "alice" / "commit-staging").exists()
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("src/later.py", b"later")
    result = run_vfs("discard", "alice")
    assert result.returncode == 0, result.stderr
    assert disk_tree(tree) == {**before, "src/new.py": b"new"}


def test_replacing_a_freshly_made_lower_directory_commits_without_a_false_conflict_50_times(
    make_workspace, tmp_path
):
    root = tmp_path / "tree"
    root.mkdir()
    ws = make_workspace("hybrid", workspace=root)
    backend = ws.files_backend
    for run in range(50):
        # made on disk just before the overlay replaces it: its files' times are
        # within a clock tick of the replacement's
        (root / f"d{run}" / "sub").mkdir(parents=True)
        (root / f"d{run}" / "sub" / "old.txt").write_text("old")
        ws.fs.rm(f"d{run}", recursive=True)
        ws.fs.mkdir(f"d{run}")
        ws.fs.pipe(f"d{run}/fresh.txt", b"fresh")
        report = commit(backend)
        assert report.conflicts == [], (run, report.conflicts)
        assert sorted(os.listdir(root / f"d{run}")) == ["fresh.txt"]
    assert scan(backend).changes == []


@pytest.mark.parametrize("edit", ["content", "chmod"])
def test_a_disk_edit_inside_a_replaced_directory_is_still_a_conflict(make_workspace, tree, edit):
    ws = make_workspace("hybrid", workspace=tree)
    ws.fs.rm("src", recursive=True)
    ws.fs.mkdir("src")
    ws.fs.pipe("src/fresh.py", b"fresh")
    target = tree / "src" / "main.py"
    st = target.stat()
    if edit == "content":  # same size, mtime put back
        target.write_text("MAIN\n")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        target.chmod(0o600)
    report = commit(ws.files_backend)
    assert [c.path for c in report.conflicts] == ["src"]
    assert target.exists()


def test_a_same_size_disk_edit_with_its_mtime_restored_is_a_conflict(home, tree):
    with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
        ws.fs.pipe("notes.txt", b"one\ntwo\nthree\n")
    target = tree / "notes.txt"
    st = target.stat()
    target.write_text("ONE\nTWO\n")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -d back to before
    result = run_vfs("commit", "alice", "--json")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["conflicts"] == [
        {"path": "notes.txt", "reason": "changed on disk since the overlay copied it"}
    ]
    assert target.read_text() == "ONE\nTWO\n"
    with Workspace.open("alice", home) as ws:
        report = commit(ws.files_backend)
        assert [c.path for c in report.conflicts] == ["notes.txt"]
        assert commit(ws.files_backend, force=True).conflicts == []
    assert target.read_text() == "one\ntwo\nthree\n"


@pytest.mark.parametrize("front_end", ["cli", "api"])
def test_forced_commit_of_an_overlay_chmod_keeps_the_disk_edits_mtime_and_reports_its_size(
    home, tree, front_end
):
    with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
        ws.fs.chmod("notes.txt", 0o600)
    target = tree / "notes.txt"
    target.write_text("edited on disk, longer\n")
    os.utime(target, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    edited = target.stat()
    if front_end == "cli":
        refused = run_vfs("commit", "alice", "--json")
        assert refused.returncode == 1, refused.stderr
        result = run_vfs("commit", "alice", "--force", "--json")
        assert result.returncode == 0, result.stderr
        committed = json.loads(result.stdout)["committed"]
    else:
        with Workspace.open("alice", home) as ws:
            assert [c.path for c in commit(ws.files_backend).conflicts] == ["notes.txt"]
            report = commit(ws.files_backend, force=True)
            committed = [c.as_dict() for c in report.committed]
    assert [(c["path"], c["size"]) for c in committed] == [("notes.txt", edited.st_size)]
    st = target.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o600, edited.st_mtime_ns)
    assert target.read_text() == "edited on disk, longer\n"


def test_a_disk_touch_after_a_copy_up_is_not_an_overlay_change(make_workspace, tree):
    ws = make_workspace("hybrid", workspace=tree)
    backend = ws.files_backend
    backend.copy_up(backend.resolve("notes.txt").ino)
    os.utime(tree / "notes.txt", ns=(1_000_000_000, 1_000_000_000))
    assert scan(backend).changes == []
    commit(backend, force=True)
    assert (tree / "notes.txt").stat().st_mtime_ns == 1_000_000_000


def test_vfs_commit_of_replaced_fresh_lower_directories_reports_no_conflict(home, tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    Workspace.create("alice", home, mode="hybrid", workspace=root).close()
    for run in range(10):
        (root / f"d{run}" / "sub").mkdir(parents=True)
        (root / f"d{run}" / "sub" / "old.txt").write_text("old")
        with Workspace.open("alice", home) as ws:
            ws.fs.rm(f"d{run}", recursive=True)
            ws.fs.mkdir(f"d{run}")
            ws.fs.pipe(f"d{run}/fresh.txt", b"fresh")
        result = run_vfs("commit", "alice", "--json")
        assert result.returncode == 0, (run, result.stdout, result.stderr)
        assert json.loads(result.stdout)["conflicts"] == []
        assert sorted(os.listdir(root / f"d{run}")) == ["fresh.txt"]


SHM = Path("/dev/shm")


@pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm, a filesystem apart from the tests'")
@pytest.mark.parametrize("kill_after", [None, 2, 4])
def test_a_home_on_another_filesystem_stages_in_a_fresh_lower_directory_and_removes_only_it(
    tree, monkeypatch, kill_after
):
    home = Path(tempfile.mkdtemp(dir=SHM))
    try:
        if os.stat(home).st_dev == os.stat(tree).st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the test tree here")
        monkeypatch.setenv("AGENT_VFS_HOME", str(home))
        with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
            ws.fs.pipe("notes.txt", b"changed\n")
            ws.fs.pipe("src/new.py", b"new")
        before = disk_tree(tree)
        if kill_after is not None:
            killed = run_vfs("commit", "alice", kill_after=kill_after)
            assert killed.returncode == -9, killed.stderr
            staging = [n for n in os.listdir(tree) if n.startswith(".agentvfs-staging-")]
            assert len(staging) == 1 and len(staging[0]) == len(".agentvfs-staging-") + 16
        result = run_vfs("commit", "alice")
        assert result.returncode == 0, result.stderr
        assert disk_tree(tree) == {**before, "notes.txt": b"changed\n", "src/new.py": b"new"}
    finally:
        shutil.rmtree(home)
