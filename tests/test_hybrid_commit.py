"""Commit, discard and diff of a hybrid overlay never lose data the overlay still shows."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import run_vfs, workspace_tree
from vfs import Workspace
from vfs.backends.hybrid.commit import commit, discard
from vfs.backends.hybrid.diff import scan, tree_stamp
from vfs.backends.hybrid.lower import LowerTree
from vfs.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "x").write_text("X-original")
    (root / "y").write_text("Y-original")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f1").write_text("f1")
    (root / "d" / "f2").write_text("f2")
    (root / "d" / "g").write_text("g")
    (root / "d" / "sub" / "f3").write_text("f3")
    return root


# -- a partial commit keeps what uncommitted renames still read --------------------


def test_committing_one_side_of_a_swap_keeps_both_files(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("x", "t")
    ws.fs.mv("y", "x")
    ws.fs.mv("t", "y")
    before = workspace_tree(ws)
    commit(backend, ["x"])
    assert workspace_tree(ws) == before
    assert (lower / "x").read_text() == "Y-original"
    assert (lower / "y").read_text() == "X-original"


def test_committing_a_new_file_over_a_moved_away_name_keeps_the_moved_file(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("x", "y")
    ws.fs.pipe("x", b"brand new x")
    before = workspace_tree(ws)
    commit(backend, ["x"])
    assert workspace_tree(ws) == before
    assert ws.fs.cat("y") == b"X-original"


def test_committing_a_new_directory_over_a_moved_one_keeps_the_moved_contents(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("d", "e", recursive=True)
    ws.fs.mkdir("d")
    ws.fs.pipe("d/new", b"new")
    before = workspace_tree(ws)
    commit(backend, ["d"])
    assert workspace_tree(ws) == before
    assert ws.fs.cat("e/sub/f3") == b"f3"


def test_a_partial_commit_waits_for_a_conflicting_change_that_reads_its_target(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("x", "t")
    ws.fs.mv("y", "x")
    ws.fs.mv("t", "y")
    (lower / "y").write_text("Y edited on disk")
    report = commit(backend, ["y"])
    assert {c.path for c in report.conflicts} == {"x", "y"}
    assert (lower / "x").read_text() == "X-original"
    assert (lower / "y").read_text() == "Y edited on disk"
    assert ws.fs.cat("y") == b"X-original"


# -- deleted or replaced lower directories ---------------------------------------


def test_commit_refuses_to_delete_a_directory_edited_on_disk_since(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    (lower / "d" / "f1").write_text("edited on disk")
    (lower / "d" / "sub" / "s").mkdir()
    (lower / "d" / "sub" / "s" / "new").write_text("new on disk")
    report = commit(backend)
    assert [c.path for c in report.conflicts] == ["d"]
    assert (lower / "d" / "f1").read_text() == "edited on disk"
    assert (lower / "d" / "sub" / "s" / "new").read_text() == "new on disk"


def test_commit_refuses_to_replace_a_directory_that_gained_a_file_on_disk(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    ws.fs.mkdir("d")
    ws.fs.pipe("d/x", b"x")
    (lower / "d" / "precious").write_text("precious")
    report = commit(backend)
    assert [c.path for c in report.conflicts] == ["d"]
    assert (lower / "d" / "precious").read_text() == "precious"
    report = commit(backend, force=True)
    assert report.conflicts == []
    assert sorted(p.name for p in (lower / "d").iterdir()) == ["x"]


def test_a_deleted_directory_whose_tree_stamp_changed_is_a_conflict(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    # what the whiteout of a deleted directory records, see tree_stamp()
    ws.db.execute("UPDATE overlay_whiteouts SET base_hash = ? WHERE name = 'd'",
                  (tree_stamp(backend.lower, "d"),))  # fmt: skip
    (lower / "d" / "sub" / "f3").write_text("f3 edited on disk")
    assert [c.path for c in commit(backend).conflicts] == ["d"]
    assert (lower / "d" / "sub" / "f3").read_text() == "f3 edited on disk"
    (lower / "d" / "sub" / "f3").write_text("f3")
    os.utime(lower / "d" / "sub" / "f3", ns=(1, 1))
    assert [c.path for c in commit(backend).conflicts] == ["d"]
    assert commit(backend, force=True).conflicts == []
    assert not (lower / "d").exists()


def test_commit_refuses_to_replace_a_directory_whose_files_were_edited_on_disk(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    ws.fs.mkdir("d")
    ws.fs.pipe("d/x", b"x")
    (lower / "d" / "sub" / "f3").write_text("f3 edited on disk")
    assert [c.path for c in commit(backend).conflicts] == ["d"]
    assert (lower / "d" / "sub" / "f3").read_text() == "f3 edited on disk"


def test_commit_refuses_to_replace_a_directory_by_a_file_after_disk_edits(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    ws.fs.pipe("d", b"now a file")
    (lower / "d" / "f1").write_text("f1 edited on disk")
    assert [c.path for c in commit(backend).conflicts] == ["d"]
    assert (lower / "d" / "f1").read_text() == "f1 edited on disk"
    assert commit(backend, force=True).conflicts == []
    assert (lower / "d").read_text() == "now a file"


def test_a_tree_stamp_changes_with_any_edit_below(lower):
    tree = LowerTree(lower)
    try:
        before = tree_stamp(tree, "d")
        assert tree_stamp(tree, "d") == before
        (lower / "d" / "sub" / "f3").write_text("longer than before")
        assert tree_stamp(tree, "d") != before
    finally:
        tree.close()


def test_a_deleted_directory_untouched_on_disk_commits(overlay, lower):
    ws, backend = overlay
    ws.fs.rm("d", recursive=True)
    assert commit(backend).conflicts == []
    assert not (lower / "d").exists()


# -- renamed directories -------------------------------------------------------------


def test_disk_edits_inside_a_renamed_directory_are_conflicts(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("d", "e", recursive=True)
    with ws.fs.open("e/g", "ab") as stream:
        stream.write(b" appended")
    ws.fs.pipe("e/f1", b"replaced")
    (lower / "d" / "g").write_text("g edited on disk")
    (lower / "d" / "f1").write_text("f1 edited on disk")
    report = commit(backend)
    assert {c.path for c in report.conflicts} == {"e"}
    assert (lower / "d" / "g").read_text() == "g edited on disk"
    assert (lower / "d" / "f1").read_text() == "f1 edited on disk"


def test_diff_reports_files_replaced_inside_a_renamed_directory(overlay):
    ws, backend = overlay
    ws.fs.mv("d", "e", recursive=True)
    ws.fs.pipe("e/f1", b"replaced")
    kinds = {(c.kind, c.path) for c in scan(backend).changes}
    assert ("modified", "e/f1") in kinds
    commit(backend)
    assert ws.fs.cat("e/f1") == b"replaced"


# -- an interrupted commit never leaves the agent stuck ------------------------------


def test_discard_after_an_interrupted_commit_clears_its_journal(home, lower):
    with Workspace.create("a", home, mode="hybrid", workspace=lower) as ws:
        ws.fs.pipe("new.txt", b"new")
        ws.fs.pipe("x", b"changed")
    killed = run_vfs("commit", "a", kill_after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    some = run_vfs("discard", "a", "x")
    assert some.returncode == 1 and "interrupted commit is pending" in some.stderr
    discarded = run_vfs("discard", "a")
    assert discarded.returncode == 0, discarded.stderr
    again = run_vfs("commit", "a")
    assert again.returncode == 0, again.stderr
    assert not (lower / "new.txt").exists()
    assert (lower / "x").read_text() == "X-original"
    switched = run_vfs("mode", "a", "disk")
    assert switched.returncode == 0, switched.stderr


def test_an_interrupted_commit_skips_a_file_deleted_since(home, lower):
    with Workspace.create("a", home, mode="hybrid", workspace=lower) as ws:
        ws.fs.pipe("new.txt", b"new")
        ws.fs.pipe("x", b"changed")
    killed = run_vfs("commit", "a", kill_after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Workspace.open("a", home) as ws:
        ws.fs.rm("new.txt")
    finished = run_vfs("commit", "a")
    assert finished.returncode == 0, finished.stderr
    assert not (lower / "new.txt").exists()
    assert (lower / "x").read_text() == "changed"


# -- discard and diff --patch --------------------------------------------------------


def test_discarding_a_rename_keeps_the_whiteout_a_new_file_of_the_old_name_needs(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("x", "y")
    ws.fs.pipe("x", b"new")
    discard(backend, ["y"])
    assert ws.fs.cat("y") == b"Y-original"
    assert ws.fs.cat("x") == b"new"
    assert [(c.kind, c.path) for c in scan(backend).changes] == [("modified", "x")]
    assert commit(backend).conflicts == []
    assert (lower / "x").read_text() == "new"


def test_diff_patch_of_a_directory_replaced_by_a_file(home, lower):
    with Workspace.create("a", home, mode="hybrid", workspace=lower) as ws:
        ws.fs.rm("d", recursive=True)
        ws.fs.pipe("d", b"now a file\n")
    result = CliRunner().invoke(main, ["diff", "a", "--patch"])
    assert result.exit_code == 0, result.output
    assert "+now a file" in result.output
