"""``vfs diff``, ``vfs commit`` and ``vfs discard`` on a hybrid agent."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from vfs import Workspace
from vfs.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def make_agent(home: Path, tree: Path) -> None:
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "a.py").write_text("a = 1\nb = 2\n")
    (tree / "old.txt").write_text("old")
    (tree / "blob.bin").write_bytes(b"\0\1\2")
    (tree / "dir").mkdir()
    (tree / "dir" / "x").write_text("x")
    with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
        ws.fs.pipe("pkg/a.py", b"a = 1\nb = 3\n")
        ws.fs.pipe("new.txt", b"hello\n")
        ws.fs.rm("old.txt")
        ws.fs.pipe("blob.bin", b"\0\\9")
        ws.fs.mv("dir", "renamed", recursive=True)


def test_diff_lists_added_modified_deleted_and_renamed_paths_with_sizes(home, tmp_path):
    make_agent(home, tmp_path / "tree")
    code, output = run("diff", "alice", "--json")
    assert code == 0, output
    changes = {c["path"]: c for c in json.loads(output)}
    assert changes["new.txt"] == {"kind": "added", "path": "new.txt", "type": "file", "size": 6}
    assert changes["pkg/a.py"]["kind"] == "modified"
    assert (changes["pkg/a.py"]["old_size"], changes["pkg/a.py"]["size"]) == (12, 12)
    assert changes["old.txt"] == {"kind": "deleted", "path": "old.txt", "type": "file",
                                  "old_size": 3}  # fmt: skip
    assert changes["renamed"]["kind"] == "renamed" and changes["renamed"]["old_path"] == "dir"
    code, output = run("diff", "alice")
    assert "A new.txt  (6 bytes)" in output
    assert "D old.txt" in output
    assert "R dir -> renamed/" in output


def test_diff_patch_shows_unified_diffs_of_text_files(home, tmp_path):
    make_agent(home, tmp_path / "tree")
    code, output = run("diff", "alice", "--patch")
    assert code == 0, output
    assert "--- a/pkg/a.py\n+++ b/pkg/a.py\n" in output
    assert "-b = 2\n+b = 3\n" in output
    assert "+++ b/new.txt" in output and "+hello" in output
    assert "Binary files a/blob.bin and b/blob.bin differ" in output


def test_commit_applies_changes_and_reports_conflicts_with_exit_1(home, tmp_path):
    tree = tmp_path / "tree"
    make_agent(home, tree)
    (tree / "pkg" / "a.py").write_text("edited on disk\n")
    code, output = run("commit", "alice")
    assert code == 1
    assert "conflict: pkg/a.py: changed on disk" in output
    assert (tree / "new.txt").read_text() == "hello\n"
    assert not (tree / "old.txt").exists()
    assert (tree / "renamed" / "x").read_text() == "x"
    assert (tree / "pkg" / "a.py").read_text() == "edited on disk\n"
    code, output = run("commit", "alice", "--force", "--json")
    assert code == 0, output
    assert [c["path"] for c in json.loads(output)["committed"]] == ["pkg/a.py"]
    assert (tree / "pkg" / "a.py").read_text() == "a = 1\nb = 3\n"
    assert run("diff", "alice", "--json")[1].strip() == "[]"


def test_discard_drops_changes_and_leaves_the_disk_alone(home, tmp_path):
    tree = tmp_path / "tree"
    make_agent(home, tree)
    code, output = run("discard", "alice", "new.txt")
    assert code == 0 and "discarded 1 change" in output
    assert "new.txt" not in run("diff", "alice")[1]
    assert run("discard", "alice")[0] == 0
    assert run("diff", "alice", "--json")[1].strip() == "[]"
    assert (tree / "old.txt").read_text() == "old"
    assert run("cat", "alice:old.txt")[1] == "old"


def test_overlay_commands_refuse_agents_in_other_modes(home):
    Workspace.create("alice", home, mode="sqlite").close()
    code, output = run("diff", "alice")
    assert code == 1 and "sqlite mode" in output and "hybrid" in output
