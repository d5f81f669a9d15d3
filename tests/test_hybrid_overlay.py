"""hybrid mode: the copy-on-write overlay over a disk tree that stays untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import vfs.backends.host
from vfs import Workspace
from vfs.backends.base import ROOT_INO
from vfs.backends.hybrid.backend import LOWER_INO_BASE
from vfs.backends.hybrid.commit import commit, discard
from vfs.backends.hybrid.diff import scan

GiB = 1 << 30


def snapshot(root: Path) -> dict[str, object]:
    """Everything a byte-for-byte comparison of a host tree needs, symlinks unfollowed."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[key] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                found[key] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return found


def db_footprint(ws: Workspace) -> tuple[int, ...]:
    counts = tuple(
        ws.db.value(f"SELECT count(*) FROM {table}")
        for table in ("inodes", "entries", "chunks", "file_chunks", "overlay_nodes")
    )
    return (*counts, ws.db.value("PRAGMA page_count"))


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("print('hello')\n")
    (root / "src" / "main.py").write_text("import pkg\n")
    (root / "docs").mkdir()
    (root / "docs" / "readme.md").write_text("# readme\n")
    (root / "notes.txt").write_text("one\ntwo\n")
    return root


def test_reading_a_1gib_lower_file_adds_nothing_to_the_database(overlay, lower):
    ws, backend = overlay
    with open(lower / "big.bin", "wb") as big:
        big.truncate(GiB)
        big.seek(GiB // 2)
        big.write(b"needle")
    before = db_footprint(ws)
    attr = backend.resolve("big.bin")
    assert attr.size == GiB
    with backend.open(attr.ino) as handle:
        assert handle.read(GiB // 2, 6) == b"needle"
        assert handle.read(GiB - 10, 100) == bytes(10)
    assert ws.fs.cat_file("big.bin", start=GiB // 2, end=GiB // 2 + 6) == b"needle"
    assert [name for name, _, _ in backend.readdir(ROOT_INO)].count("big.bin") == 1
    assert db_footprint(ws) == before


def test_a_one_byte_write_into_a_1gib_lower_file_stores_under_1mib(overlay, lower):
    ws, backend = overlay
    with open(lower / "big.bin", "wb") as big:
        big.truncate(GiB)
        big.seek(GiB // 2)
        big.write(b"needle")
    page_size = ws.db.value("PRAGMA page_size")
    before = ws.db.value("PRAGMA page_count") * page_size
    ino = backend.resolve("big.bin").ino
    with backend.open(ino, os.O_RDWR) as handle:
        handle.write(GiB // 2 + 1, b"E")
    grown = ws.db.value("PRAGMA page_count") * page_size - before
    assert grown < 1 << 20
    assert ws.db.value("SELECT count(*) FROM file_chunks") == 1
    with backend.open(ino) as handle:
        assert handle.read(GiB // 2 - 2, 10) == b"\0\0nEedle\0\0"
        assert len(handle.read(GiB - 5, 100)) == 5
    assert (lower / "big.bin").stat().st_size == GiB
    with open(lower / "big.bin", "rb") as big:
        big.seek(GiB // 2)
        assert big.read(6) == b"needle"


def test_the_lower_tree_is_byte_for_byte_unchanged_until_commit(overlay, lower):
    ws, backend = overlay
    (lower / "outside-link").symlink_to("/etc")
    before = snapshot(lower)
    fs = ws.fs
    fs.pipe("notes.txt", b"rewritten\n")
    fs.pipe("new/dir/file.txt", b"new")
    fs.rm("docs", recursive=True)
    fs.mkdir("docs")
    fs.pipe("docs/other.md", b"other")
    fs.mv("src", "source", recursive=True)
    with fs.open("source/main.py", "ab") as stream:
        stream.write(b"# appended\n")
    backend.setattr(backend.resolve("source/pkg/mod.py").ino, mode=0o600, size=3)
    backend.symlink(ROOT_INO, "link", b"notes.txt")
    backend.link(backend.resolve("notes.txt").ino, ROOT_INO, "hard.txt")
    backend.setxattr(backend.resolve("source/pkg").ino, b"user.tag", b"x")
    backend.unlink(ROOT_INO, "outside-link")
    assert snapshot(lower) == before
    assert fs.cat("source/main.py") == b"import pkg\n# appended\n"
    assert fs.cat("source/pkg/mod.py") == b"pri"
    assert not fs.exists("docs/readme.md")
    commit(backend)
    assert snapshot(lower) != before
    assert (lower / "source" / "main.py").read_bytes() == b"import pkg\n# appended\n"
    assert not (lower / "src").exists()
    assert not (lower / "outside-link").is_symlink()


def test_opening_and_reading_lower_files_copies_nothing_up(overlay):
    ws, _ = overlay
    before = db_footprint(ws)
    for path in ("notes.txt", "src/main.py", "src/pkg/mod.py"):
        assert ws.fs.cat(path)
        assert ws.fs.info(path)["size"] > 0
    assert ws.fs.find("/") == ["/docs/readme.md", "/notes.txt", "/src/main.py", "/src/pkg/mod.py"]
    assert db_footprint(ws) == before


def test_deleting_a_lower_directory_and_recreating_it_hides_the_old_contents(overlay, lower):
    ws, _backend = overlay
    ws.fs.rm("src", recursive=True)
    ws.fs.mkdir("src")
    assert ws.fs.ls("src", detail=False) == []
    ws.fs.pipe("src/fresh.py", b"fresh")
    assert ws.fs.ls("src", detail=False) == ["/src/fresh.py"]
    assert (lower / "src" / "pkg" / "mod.py").exists()
    assert commit(_backend).conflicts == []
    assert sorted(p.name for p in (lower / "src").iterdir()) == ["fresh.py"]


def test_renaming_a_lower_directory_moves_its_contents(overlay, lower):
    ws, backend = overlay
    ws.fs.mv("src", "lib", recursive=True)
    assert ws.fs.cat("lib/pkg/mod.py") == b"print('hello')\n"
    assert not ws.fs.exists("src")
    kinds = {(c.kind, c.path, c.old_path) for c in scan(backend).changes}
    assert ("renamed", "lib", "src") in kinds
    commit(backend)
    assert (lower / "lib" / "pkg" / "mod.py").read_text() == "print('hello')\n"
    assert not (lower / "src").exists()
    assert scan(backend).changes == []
    assert ws.fs.cat("lib/main.py") == b"import pkg\n"


def test_unmodified_files_show_disk_changes_made_behind_the_overlay(overlay, lower):
    ws, _ = overlay
    assert ws.fs.cat("notes.txt") == b"one\ntwo\n"
    (lower / "notes.txt").write_text("changed on disk\n")
    (lower / "docs" / "added.md").write_text("added on disk")
    assert ws.fs.cat("notes.txt") == b"changed on disk\n"
    assert ws.fs.cat("docs/added.md") == b"added on disk"


def test_commit_stops_at_a_file_changed_on_disk_and_force_overrides(overlay, lower):
    ws, backend = overlay
    ws.fs.pipe("notes.txt", b"overlay version\n")
    with ws.fs.open("docs/readme.md", "ab") as stream:
        stream.write(b"more\n")
    ws.fs.pipe("added.txt", b"added")
    (lower / "notes.txt").write_text("disk version\n")
    report = commit(backend)
    assert [(c.path, c.reason) for c in report.conflicts] == [
        ("notes.txt", "changed on disk since the overlay copied it")
    ]
    assert (lower / "notes.txt").read_text() == "disk version\n"
    assert (lower / "docs" / "readme.md").read_text() == "# readme\nmore\n"
    assert (lower / "added.txt").read_text() == "added"
    assert [c.path for c in scan(backend).changes] == ["notes.txt"]
    report = commit(backend, force=True)
    assert report.conflicts == []
    assert (lower / "notes.txt").read_text() == "overlay version\n"


def test_a_touched_but_unchanged_disk_file_is_no_conflict(overlay, lower):
    ws, backend = overlay
    with ws.fs.open("notes.txt", "ab") as stream:
        stream.write(b"three\n")
    os.utime(lower / "notes.txt", ns=(1, 1))
    assert commit(backend).conflicts == []
    assert (lower / "notes.txt").read_text() == "one\ntwo\nthree\n"


@pytest.mark.parametrize("without_openat2", [False, True])
def test_symlinks_in_the_lower_tree_are_never_followed_out_of_it(
    overlay, lower, tmp_path, without_openat2, monkeypatch
):
    if without_openat2:  # the fallback that walks one name at a time
        monkeypatch.setattr(vfs.backends.host, "openat2_available", False)
    ws, backend = overlay
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (lower / "escape").symlink_to(outside)
    (lower / "escape-file").symlink_to(outside / "secret")
    assert backend.readlink(backend.resolve("escape").ino) == os.fsencode(outside)
    with pytest.raises(PermissionError):
        ws.fs.cat("escape/secret")
    with pytest.raises(PermissionError):
        ws.fs.cat("escape-file")
    # A directory swapped for a symlink behind the overlay's back is not entered.
    ws.fs.pipe("docs/new.md", b"new")
    ws.fs.ls("docs")
    (lower / "docs" / "readme.md").unlink()
    (lower / "docs").rmdir()
    (lower / "docs").symlink_to(outside)
    assert not ws.fs.exists("docs/secret")
    with pytest.raises(OSError):
        commit(backend, force=True)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_inode_numbers_are_stable_and_survive_copy_up(overlay):
    _, backend = overlay
    lower_ino = backend.resolve("src/pkg/mod.py").ino
    assert lower_ino >= LOWER_INO_BASE
    assert backend.resolve("src/pkg/mod.py").ino == lower_ino
    listed = {name: attr.ino for name, attr, _ in backend.readdir(backend.resolve("src/pkg").ino)}
    assert listed["mod.py"] == lower_ino
    with backend.open(lower_ino, os.O_WRONLY) as handle:
        handle.write(0, b"P")
    assert backend.resolve("src/pkg/mod.py").ino == lower_ino
    assert backend.getattr(lower_ino).size == len("print('hello')\n")
    handle, attr = backend.create(ROOT_INO, "brand-new", 0o644)
    handle.close()
    assert attr.ino < LOWER_INO_BASE


def test_readdir_offsets_resume_without_repeats_while_files_are_copied_up(overlay, lower):
    ws, backend = overlay
    for i in range(20):
        (lower / f"f{i:02}").write_text(str(i))
    seen = []
    offset = 0
    while True:
        batch = list(backend.readdir(ROOT_INO, offset))[:3]
        if not batch:
            break
        for name, attr, next_offset in batch:
            seen.append(name)
            offset = next_offset
            if name.startswith("f"):
                with backend.open(attr.ino, os.O_WRONLY) as handle:  # copies it up
                    handle.write(0, b"x")
    ws.fs.pipe("zz-added", b"")
    assert sorted(seen) == sorted(set(seen))
    assert {f"f{i:02}" for i in range(20)} <= set(seen)


def test_discard_drops_all_changes_or_those_under_a_path(overlay, lower):
    ws, backend = overlay
    before = ws.fs.find("/")
    ws.fs.pipe("notes.txt", b"changed")
    ws.fs.rm("docs", recursive=True)
    ws.fs.mv("src", "lib", recursive=True)
    assert discard(backend, ["lib"]) >= 1
    assert ws.fs.exists("src/main.py") and not ws.fs.exists("lib")
    assert not ws.fs.exists("docs")
    discard(backend)
    assert ws.fs.find("/") == before
    assert ws.fs.cat("notes.txt") == b"one\ntwo\n"
    assert scan(backend).changes == []


def test_commit_of_one_path_leaves_other_changes_in_the_overlay(overlay, lower):
    ws, backend = overlay
    ws.fs.pipe("notes.txt", b"changed")
    ws.fs.pipe("docs/new.md", b"new")
    commit(backend, ["docs"])
    assert (lower / "docs" / "new.md").read_text() == "new"
    assert (lower / "notes.txt").read_text() == "one\ntwo\n"
    assert [c.path for c in scan(backend).changes] == ["notes.txt"]
    assert ws.fs.cat("docs/new.md") == b"new"


def test_permission_and_mtime_changes_are_committed(overlay, lower):
    _, backend = overlay
    ino = backend.resolve("notes.txt").ino
    backend.setattr(ino, mode=0o600, mtime_ns=1_000_000_000)
    assert [(c.kind, c.path) for c in scan(backend).changes] == [("modified", "notes.txt")]
    assert (lower / "notes.txt").stat().st_mode & 0o777 != 0o600
    commit(backend)
    st = (lower / "notes.txt").stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o600, 1_000_000_000)
    assert (lower / "notes.txt").read_text() == "one\ntwo\n"
    assert scan(backend).changes == []
