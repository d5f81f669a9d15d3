"""hybrid mode: how the overlay sees lower files that change behind its back.

An upper file copied from a lower file keeps its own edits readable when the
lower file goes away, shows the lower file as it is now while its content was
never changed, and a disk file that happens to reuse the inode number of a
copied-up file is a different object.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vfs.backends.base import ROOT_INO
from vfs.backends.hybrid.backend import LOWER_INO_BASE, HybridBackend
from vfs.backends.hybrid.commit import commit


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f").write_bytes(b"abc")
    (root / "notes.txt").write_bytes(b"short\n")
    return root


def append(backend: HybridBackend, path: str, data: bytes) -> None:
    with backend.open(backend.resolve(path).ino, os.O_WRONLY | os.O_APPEND) as handle:
        handle.write(0, data)


# -- the overlay's own bytes do not depend on the lower file still being there --


@pytest.mark.parametrize("replacement", ["deleted", "directory"])
def test_overlay_edits_stay_readable_when_the_lower_file_goes_away(overlay, lower, replacement):
    ws, backend = overlay
    append(backend, "f", b"defg")
    assert ws.db.value("SELECT count(*) FROM file_chunks") == 1
    (lower / "f").unlink()
    if replacement == "directory":
        (lower / "f").mkdir()
    assert ws.fs.cat_file("f") == b"abcdefg"
    assert backend.getattr(backend.resolve("f").ino).size == 7


def test_unwritten_chunks_of_a_file_whose_lower_file_vanished_read_as_zeros(overlay, lower):
    ws, backend = overlay
    cs = backend.chunk_size
    (lower / "big").write_bytes(b"x" * (3 * cs))
    ino = backend.resolve("big").ino
    with backend.open(ino, os.O_WRONLY) as handle:
        handle.write(cs, b"Y")
    (lower / "big").unlink()
    data = ws.fs.cat_file("big")
    assert len(data) == 3 * cs
    assert data[cs : cs + 2] == b"Yx"  # the written chunk keeps all its bytes
    assert data[:cs] == bytes(cs) and data[2 * cs :] == bytes(cs)


def test_commit_of_an_edit_whose_lower_file_vanished_writes_the_overlay_bytes(overlay, lower):
    _, backend = overlay
    append(backend, "f", b"defg")
    (lower / "f").unlink()
    report = commit(backend, force=True)
    assert report.conflicts == []
    assert (lower / "f").read_bytes() == b"abcdefg"


# -- a file whose content never changed shows the lower file as it is now -------


@pytest.mark.parametrize("how", ["chmod", "xattr", "open_rdwr"])
def test_a_metadata_only_copy_up_shows_later_disk_content_whole(overlay, lower, how):
    ws, backend = overlay
    ino = backend.resolve("notes.txt").ino
    if how == "chmod":
        backend.setattr(ino, mode=0o600)
    elif how == "xattr":
        backend.setxattr(ino, b"user.tag", b"x")
    else:
        backend.open(ino, os.O_RDWR).close()
    assert ws.db.value("SELECT count(*) FROM inodes WHERE ino = ?", (ino,)) == 1
    (lower / "notes.txt").write_bytes(b"much longer content now\n")
    assert ws.fs.cat_file("notes.txt") == b"much longer content now\n"
    attr = backend.getattr(ino)
    assert attr.size == len(b"much longer content now\n")
    assert attr.mtime_ns == (lower / "notes.txt").stat().st_mtime_ns
    assert backend.resolve("notes.txt").size == attr.size
    listed = {name: a.size for name, a, _ in backend.readdir(ROOT_INO)}
    assert listed["notes.txt"] == attr.size
    if how == "chmod":
        assert attr.mode & 0o777 == 0o600


def test_a_renamed_but_unedited_file_shows_later_disk_content(overlay, lower):
    ws, _ = overlay
    ws.fs.mv("notes.txt", "moved.txt")
    (lower / "notes.txt").write_bytes(b"rewritten on disk, longer\n")
    assert ws.fs.cat_file("moved.txt") == b"rewritten on disk, longer\n"


def test_a_write_after_a_disk_change_edits_the_content_the_overlay_showed(overlay, lower):
    ws, backend = overlay
    ino = backend.resolve("notes.txt").ino
    backend.setattr(ino, mode=0o600)
    with backend.open(ino, os.O_RDWR) as handle:
        (lower / "notes.txt").write_bytes(b"much longer content now\n")
        handle.write(0, b"M")
    assert ws.fs.cat_file("notes.txt") == b"Much longer content now\n"
    assert commit(backend).conflicts == []
    assert (lower / "notes.txt").read_bytes() == b"Much longer content now\n"


def test_truncating_after_a_disk_change_cuts_the_content_the_overlay_showed(overlay, lower):
    ws, backend = overlay
    ino = backend.resolve("notes.txt").ino
    backend.setattr(ino, mode=0o600)
    (lower / "notes.txt").write_bytes(b"much longer content now\n")
    backend.setattr(ino, size=11)
    assert ws.fs.cat_file("notes.txt") == b"much longer"
    (lower / "notes.txt").write_bytes(b"changed again on disk\n")
    assert ws.fs.cat_file("notes.txt") == b"much longer"


def test_reading_a_metadata_only_copy_up_copies_no_content(overlay, lower):
    ws, backend = overlay
    backend.setattr(backend.resolve("notes.txt").ino, mode=0o600)
    (lower / "notes.txt").write_bytes(b"x" * 100_000)
    before = ws.db.value("SELECT count(*) FROM file_chunks"), ws.db.value("PRAGMA page_count")
    assert ws.fs.cat_file("notes.txt") == b"x" * 100_000
    after = ws.db.value("SELECT count(*) FROM file_chunks"), ws.db.value("PRAGMA page_count")
    assert after == before


# -- a disk object reusing a copied-up object's inode number is another object ---


def test_a_disk_file_at_a_new_path_with_a_copied_up_inode_number_shows_its_own_content(
    overlay, lower
):
    ws, backend = overlay
    append(backend, "f", b"-overlay")
    upper_ino = backend.resolve("f").ino
    os.rename(lower / "f", lower / "b0")  # the same st_ino, now at another path
    assert (lower / "b0").stat().st_ino & 0xFFFF == (upper_ino & 0xFFFF)
    assert ws.fs.cat_file("b0") == b"abc"
    assert ws.fs.cat_file("f") == b"abc-overlay"
    b0 = backend.resolve("b0")
    assert b0.ino != upper_ino and b0.ino >= LOWER_INO_BASE and b0.size == 3
    listed = {name: attr.ino for name, attr, _ in backend.readdir(ROOT_INO)}
    assert listed["b0"] == b0.ino and listed["f"] == upper_ino


def test_a_disk_file_reusing_a_freed_inode_number_is_not_the_overlay_file(overlay, lower):
    ws, backend = overlay
    append(backend, "f", b"-overlay")
    freed = (lower / "f").stat().st_ino
    (lower / "f").unlink()
    reused = None
    for i in range(64):
        candidate = lower / f"b{i}"
        candidate.write_bytes(b"new disk file")
        if candidate.stat().st_ino == freed:
            reused = candidate.name
            break
    if reused is None:
        pytest.skip("the filesystem under tmp_path did not reuse the freed inode number")
    assert ws.fs.cat_file(reused) == b"new disk file"
    assert ws.fs.cat_file("f") == b"abc-overlay"
    assert backend.resolve(reused).ino != backend.resolve("f").ino


def test_a_renumbered_disk_file_keeps_its_number_after_the_overlay_file_is_gone(overlay, lower):
    ws, backend = overlay
    append(backend, "f", b"-overlay")
    os.rename(lower / "f", lower / "b0")
    number = backend.resolve("b0").ino
    ws.fs.rm("f")  # frees the copied-up inode, and with it the natural number
    assert backend.resolve("b0").ino == number
    with backend.open(number, os.O_WRONLY | os.O_APPEND) as handle:
        handle.write(0, b"!")
    assert backend.resolve("b0").ino == number
    assert ws.fs.cat_file("b0") == b"abc!"


def test_a_directory_moved_on_disk_is_not_the_copied_up_directory(overlay, lower):
    ws, _ = overlay
    (lower / "d").mkdir()
    (lower / "d" / "old").write_bytes(b"old")
    ws.fs.pipe("d/added", b"added")
    os.rename(lower / "d", lower / "e")
    assert sorted(ws.fs.ls("e", detail=False)) == ["/e/old"]
    assert ws.fs.ls("d", detail=False) == ["/d/added"]


def test_hard_links_of_a_lower_file_still_share_the_copied_up_inode(overlay, lower):
    ws, backend = overlay
    os.link(lower / "f", lower / "g")
    append(backend, "f", b"-both")
    assert backend.resolve("g").ino == backend.resolve("f").ino
    assert ws.fs.cat_file("g") == b"abc-both"
