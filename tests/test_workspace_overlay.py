"""``Workspace.overlay``: diff, commit and discard from Python; what hybrid shares
with sqlite mode: the rename rules over lower objects and one checksum scheme."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.backends.base import ROOT_INO


def test_overlay_diff_commit_and_discard_from_python(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "keep.txt").write_text("keep")
    (tree / "drop.txt").write_text("drop")
    ws = make_workspace("hybrid", workspace=tree)
    ws.fs.pipe("/keep.txt", b"changed")
    ws.fs.pipe("/new.txt", b"new")
    ws.fs.rm("/drop.txt")
    assert {(c.kind, c.path) for c in ws.overlay.diff()} == {
        ("modified", "keep.txt"),
        ("added", "new.txt"),
        ("deleted", "drop.txt"),
    }
    assert ws.overlay.discard(["drop.txt"]) == 1
    assert ws.fs.cat("/drop.txt") == b"drop"
    report = ws.overlay.commit(["keep.txt"])
    assert [c.path for c in report.committed] == ["keep.txt"] and not report.conflicts
    assert (tree / "keep.txt").read_text() == "changed"
    assert not (tree / "new.txt").exists()
    assert [c.path for c in ws.overlay.diff()] == ["new.txt"]
    assert ws.overlay.commit().committed[0].path == "new.txt"
    assert (tree / "new.txt").read_text() == "new"
    assert ws.overlay.diff() == []


def test_overlay_commit_reports_a_disk_edit_as_a_conflict(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("base")
    ws = make_workspace("hybrid", workspace=tree)
    ws.fs.pipe("/f", b"overlay")
    (tree / "f").write_text("edited on disk")
    assert [c.path for c in ws.overlay.conflicts()] == ["f"]
    report = ws.overlay.commit()
    assert [c.path for c in report.conflicts] == ["f"]
    assert (tree / "f").read_text() == "edited on disk"
    ws.overlay.commit(force=True)
    assert (tree / "f").read_text() == "overlay"


@pytest.mark.parametrize("mode", ["sqlite", "disk"])
def test_overlay_outside_hybrid_mode_is_a_clear_error(
    make_workspace: Callable[..., Workspace], mode: str
) -> None:
    ws = make_workspace(mode)
    with pytest.raises(ValueError, match=f"in {mode} mode: diff, commit and discard need hybrid"):
        ws.overlay.diff()


def test_a_lower_directory_cannot_move_into_its_own_lower_child(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "outer" / "inner").mkdir(parents=True)
    ws = make_workspace("hybrid", workspace=tree)
    backend = ws.files_backend
    inner = backend.resolve("outer/inner")
    with pytest.raises(OSError) as caught:
        backend.rename(ROOT_INO, "outer", inner.ino, "moved")
    assert caught.value.errno == errno.EINVAL
    assert ws.overlay.diff() == []  # the refused rename copied nothing up
    assert os.path.isdir(tree / "outer" / "inner")


def test_files_and_outputs_of_equal_content_have_one_checksum_in_sqlite_and_hybrid(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    data = os.urandom(200_000) + bytes(150_000) + b"tail"  # a chunk of zeros stores nothing
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "lower.bin").write_bytes(data)
    sqlite = make_workspace("sqlite", agent="s")
    hybrid = make_workspace("hybrid", agent="h", workspace=tree)
    sqlite.fs.pipe("/f.bin", data)
    hybrid.fs.pipe("/f.bin", data)
    want = sqlite.backend.checksum(sqlite.backend.resolve("/f.bin").ino)
    assert hybrid.backend.checksum(hybrid.backend.resolve("/f.bin").ino) == want
    assert hybrid.backend.checksum(hybrid.backend.resolve("/lower.bin").ino) == want
    for ws in (sqlite, hybrid):
        run = ws.artifacts.start("t")
        assert ws.artifacts.attach(run.id, "bytes", data).digest == want
        assert ws.artifacts.attach_file(run.id, "file", "/f.bin").digest == want


def test_attaching_a_file_shares_the_writes_an_open_handle_still_buffers(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace("sqlite")
    backend = ws.files_backend
    handle, _ = backend.create(ROOT_INO, "f", 0o644)
    with handle:
        handle.write(0, b"buffered")
        run = ws.artifacts.start("t")
        out = ws.artifacts.attach_file(run.id, "f", "/f")
    assert (out.size, ws.artifacts.read(run.id, "f")) == (8, b"buffered")
