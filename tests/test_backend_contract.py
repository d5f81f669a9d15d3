"""The ``Backend`` interface (backends/base.py) in every mode, without FUSE: names.

Renames and their flags, hard links and link counts, readdir offsets, and
every errno the interface documents. Each test runs in every mode through the
``given`` fixture (tests/support/backend_contract.py); the FUSE tests check the
same rules through the kernel, these check the engines directly.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator

import pytest

from tests.support.backend_contract import (
    LONG_NAME,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    Given,
    cat,
    fails,
    ino,
    ls,
)
from vfs.backends.base import ROOT_INO, Attr

# -- rename ------------------------------------------------------------------------------


def test_rename_over_an_existing_file_replaces_it(given: Given) -> None:
    b = given({"d": None, "d/new": b"new", "d/old": b"old"})
    moved = ino(b, "d/new")
    b.rename(ino(b, "d"), "new", ino(b, "d"), "old")
    assert ls(b, "d") == ["old"]
    assert ino(b, "d/old") == moved
    assert cat(b, "d/old") == b"new"


def test_rename_across_directories_moves_the_subtree(given: Given) -> None:
    b = given({"a": None, "a/sub": None, "a/sub/f": b"leaf", "b": None})
    leaf = ino(b, "a/sub/f")
    b.rename(ino(b, "a"), "sub", ino(b, "b"), "moved")
    assert ls(b, "a") == [] and ls(b, "b") == ["moved"]
    assert ino(b, "b/moved/f") == leaf
    assert cat(b, "b/moved/f") == b"leaf"
    assert b.getattr(ino(b, "a")).nlink == 2 and b.getattr(ino(b, "b")).nlink == 3


def test_rename_of_a_directory_over_an_empty_directory_replaces_it(given: Given) -> None:
    b = given({"src": None, "src/f": b"x", "empty": None})
    moved = ino(b, "src")
    b.rename(ROOT_INO, "src", ROOT_INO, "empty")
    assert ino(b, "empty") == moved
    assert ls(b, "empty") == ["f"]
    fails(errno.ENOENT, lambda: b.lookup(ROOT_INO, "src"))


def test_rename_of_a_directory_over_a_non_empty_directory_is_enotempty(given: Given) -> None:
    b = given({"src": None, "full": None, "full/f": b"x"})
    fails(errno.ENOTEMPTY, lambda: b.rename(ROOT_INO, "src", ROOT_INO, "full"))
    assert ls(b, "full") == ["f"] and b.lookup(ROOT_INO, "src").is_dir


def test_rename_of_a_directory_into_itself_is_einval(given: Given) -> None:
    b = given({"top": None, "top/mid": None})
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "top", ino(b, "top"), "inside"))
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "top", ino(b, "top/mid"), "deeper"))
    assert ls(b, "top") == ["mid"]


def test_rename_of_a_file_over_a_directory_is_eisdir(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.EISDIR, lambda: b.rename(ROOT_INO, "f", ROOT_INO, "d"))
    assert cat(b, "f") == b"x"


def test_rename_of_a_directory_over_a_file_is_enotdir(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.ENOTDIR, lambda: b.rename(ROOT_INO, "d", ROOT_INO, "f"))
    assert cat(b, "f") == b"x"


def test_rename_onto_another_name_of_the_same_inode_changes_nothing(given: Given) -> None:
    b = given({"a": b"x", "d": None})
    b.link(ino(b, "a"), ROOT_INO, "b")
    b.rename(ROOT_INO, "a", ROOT_INO, "b")  # POSIX: both names stay
    b.rename(ROOT_INO, "a", ROOT_INO, "a")
    b.rename(ROOT_INO, "d", ROOT_INO, "d")
    assert ls(b) == ["a", "b", "d"]
    assert b.getattr(ino(b, "a")).nlink == 2


def test_rename_of_a_missing_name_is_enoent(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENOENT, lambda: b.rename(ROOT_INO, "missing", ROOT_INO, "g"))


def test_rename_noreplace_refuses_an_existing_target(given: Given) -> None:
    b = given({"a": b"A", "b": b"B"})
    fails(errno.EEXIST, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", RENAME_NOREPLACE))
    b.rename(ROOT_INO, "a", ROOT_INO, "c", RENAME_NOREPLACE)
    assert ls(b) == ["b", "c"]
    assert (cat(b, "b"), cat(b, "c")) == (b"B", b"A")


def test_rename_noreplace_onto_another_name_of_the_same_inode_is_eexist(given: Given) -> None:
    b = given({"a": b"A"})
    b.link(ino(b, "a"), ROOT_INO, "b")
    fails(errno.EEXIST, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", RENAME_NOREPLACE))


def test_rename_exchange_swaps_a_file_and_a_directory(given: Given) -> None:
    b = given({"p": None, "p/f": b"file", "p/d": None, "p/d/inner": b"in", "e": None})
    p, f, d = ino(b, "p"), ino(b, "p/f"), ino(b, "p/d")
    b.rename(p, "f", p, "d", RENAME_EXCHANGE)
    assert (ino(b, "p/d"), ino(b, "p/f")) == (f, d)
    assert cat(b, "p/d") == b"file" and cat(b, "p/f/inner") == b"in"
    # across directories, the link counts of both parents follow the directory
    handle, _attr = b.create(ino(b, "e"), "g", 0o644)
    handle.close()
    b.rename(p, "f", ino(b, "e"), "g", RENAME_EXCHANGE)
    assert cat(b, "e/g/inner") == b"in" and cat(b, "p/f") == b""
    assert (b.getattr(p).nlink, b.getattr(ino(b, "e")).nlink) == (2, 3)


def test_rename_exchange_needs_both_names(given: Given) -> None:
    b = given({"a": b"A"})
    fails(errno.ENOENT, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "nothing", RENAME_EXCHANGE))
    assert cat(b, "a") == b"A"


def test_rename_exchange_of_a_directory_with_its_own_descendant_is_einval(given: Given) -> None:
    b = given({"top": None, "top/child": None})
    fails(
        errno.EINVAL,
        lambda: b.rename(ROOT_INO, "top", ino(b, "top"), "child", RENAME_EXCHANGE),
    )


def test_rename_with_both_noreplace_and_exchange_is_einval(given: Given) -> None:
    b = given({"a": b"A", "b": b"B"})
    both = RENAME_NOREPLACE | RENAME_EXCHANGE
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "a", ROOT_INO, "b", both))
    assert (cat(b, "a"), cat(b, "b")) == (b"A", b"B")


def test_an_open_file_renamed_over_keeps_its_content(given: Given) -> None:
    b = given({"old": b"old content", "new": b"new"})
    with b.open(ino(b, "old")) as handle:
        b.rename(ROOT_INO, "new", ROOT_INO, "old")
        assert handle.read(0, 100) == b"old content"
    assert cat(b, "old") == b"new"


# -- hard links and link counts ---------------------------------------------------------------


def test_hard_links_share_one_inode_and_count_names(given: Given) -> None:
    b = given({"a": b"shared", "d": None})
    first = ino(b, "a")
    linked = b.link(first, ino(b, "d"), "b")
    assert linked.ino == first and linked.nlink == 2
    assert b.getattr(first).nlink == 2
    with b.open(first, os.O_WRONLY) as handle:
        handle.write(0, b"SHARED")
    assert cat(b, "d/b") == b"SHARED"
    b.unlink(ROOT_INO, "a")
    assert b.getattr(ino(b, "d/b")).nlink == 1
    assert cat(b, "d/b") == b"SHARED"


def test_a_hard_link_of_a_symlink_links_the_symlink_itself(given: Given) -> None:
    b = given({})
    link = b.symlink(ROOT_INO, "s", b"target")
    other = b.link(link.ino, ROOT_INO, "s2")
    assert other.is_link and other.ino == link.ino
    assert b.readlink(other.ino) == b"target"


def test_a_hard_link_of_a_directory_is_eperm(given: Given) -> None:
    b = given({"d": None})
    fails(errno.EPERM, lambda: b.link(ino(b, "d"), ROOT_INO, "d2"))


def test_the_root_counts_its_subdirectories(given: Given) -> None:
    b = given({"d": None, "e": None, "f": b""})
    assert b.getattr(ROOT_INO).nlink == 4
    b.mkdir(ROOT_INO, "g", 0o755)
    b.rmdir(ROOT_INO, "d")
    assert b.getattr(ROOT_INO).nlink == 4


def test_a_directory_counts_itself_its_parent_entry_and_its_subdirectories(given: Given) -> None:
    b = given({"d": None, "d/sub": None, "d/f": b""})
    d = ino(b, "d")
    assert b.getattr(d).nlink == 3
    b.mkdir(d, "more", 0o755)
    assert b.getattr(d).nlink == 4
    b.rmdir(d, "sub")
    b.rmdir(d, "more")
    assert b.getattr(d).nlink == 2


# -- readdir ---------------------------------------------------------------------------


def test_readdir_lists_every_entry_once_with_its_attributes(given: Given) -> None:
    b = given({"d": None, "d/f": b"12", "d/sub": None})
    entries = {name: attr for name, attr, _offset in b.readdir(ino(b, "d"))}
    assert set(entries) == {"f", "sub"}  # no "." or ".."
    assert entries["f"].size == 2 and entries["f"].is_file and entries["sub"].is_dir
    assert entries["f"].ino == ino(b, "d/f")


def test_readdir_resumes_from_each_offset_it_returns(given: Given) -> None:
    names = [f"f{i:02}" for i in range(30)]
    b = given({"d": None, **{f"d/{n}": b"" for n in names}})
    d = ino(b, "d")
    seen: list[str] = []
    offset = 0
    while batch := _take(b.readdir(d, offset), 7):
        assert all(next_offset != 0 for _name, _attr, next_offset in batch)
        seen += [name for name, _attr, _offset in batch]
        offset = batch[-1][2]
    assert sorted(seen) == names


def test_readdir_offsets_stay_stable_while_entries_come_and_go(given: Given) -> None:
    keep = [f"keep{i:02}" for i in range(20)]
    drop = [f"drop{i:02}" for i in range(20)]
    b = given({"d": None, **{f"d/{n}": b"" for n in keep + drop}})
    d = ino(b, "d")
    seen: list[str] = []
    offset = 0
    for round_ in range(100):  # a listing ends: 40 entries, 10 added
        batch = _take(b.readdir(d, offset), 4)
        if not batch:
            break
        seen += [name for name, _attr, _offset in batch]
        offset = batch[-1][2]
        # change the directory between two calls of one listing, as other
        # processes do between two getdents calls
        if round_ < 10:
            handle, _attr = b.create(d, f"added{round_:02}", 0o644)
            handle.close()
            for name in drop[2 * round_ : 2 * round_ + 2]:
                b.unlink(d, name)
    else:
        pytest.fail("the listing never ended")
    assert len(seen) == len(set(seen))  # nothing twice
    assert sorted(n for n in seen if n.startswith("keep")) == keep  # nothing skipped


def _take(entries: Iterator[tuple[str, Attr, int]], count: int) -> list[tuple[str, Attr, int]]:
    batch = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == count:
            break
    return batch


# -- errors the interface documents -------------------------------------------------------------


def test_enoent_for_every_operation_on_a_missing_name(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    fails(errno.ENOENT, lambda: b.lookup(d, "missing"))
    fails(errno.ENOENT, lambda: b.resolve("d/missing/deeper"))
    fails(errno.ENOENT, lambda: b.unlink(d, "missing"))
    fails(errno.ENOENT, lambda: b.rmdir(d, "missing"))
    fails(errno.ENOENT, lambda: b.rename(d, "missing", d, "other"))


def test_enoent_for_creating_in_a_removed_directory(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    b.rmdir(ROOT_INO, "d")
    fails(errno.ENOENT, lambda: b.create(d, "f", 0o644))
    fails(errno.ENOENT, lambda: b.mkdir(d, "sub", 0o755))


def test_eexist_for_every_way_of_making_an_existing_name(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    f = ino(b, "f")
    fails(errno.EEXIST, lambda: b.create(ROOT_INO, "f", 0o644))
    fails(errno.EEXIST, lambda: b.create(ROOT_INO, "d", 0o644))
    fails(errno.EEXIST, lambda: b.mkdir(ROOT_INO, "f", 0o755))
    fails(errno.EEXIST, lambda: b.mkdir(ROOT_INO, "d", 0o755))
    fails(errno.EEXIST, lambda: b.symlink(ROOT_INO, "f", b"x"))
    fails(errno.EEXIST, lambda: b.mknod(ROOT_INO, "f", stat.S_IFIFO | 0o644))
    fails(errno.EEXIST, lambda: b.mknod(ROOT_INO, "d", stat.S_IFSOCK | 0o644))
    fails(errno.EEXIST, lambda: b.link(f, ROOT_INO, "d"))
    assert cat(b, "f") == b"x"


def test_enotdir_for_a_file_used_as_a_directory(given: Given) -> None:
    b = given({"f": b"x"})
    f = ino(b, "f")
    fails(errno.ENOTDIR, lambda: list(b.readdir(f)))
    fails(errno.ENOTDIR, lambda: b.create(f, "x", 0o644))
    fails(errno.ENOTDIR, lambda: b.mkdir(f, "x", 0o755))
    fails(errno.ENOTDIR, lambda: b.rmdir(ROOT_INO, "f"))
    fails(errno.ENOTDIR, lambda: b.resolve("f/x"))


def test_lookup_in_a_file_is_enotdir(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENOTDIR, lambda: b.lookup(ino(b, "f"), "x"))


def test_eisdir_for_a_directory_used_as_a_file(given: Given) -> None:
    b = given({"d": None})
    d = ino(b, "d")
    fails(errno.EISDIR, lambda: b.unlink(ROOT_INO, "d"))
    fails(errno.EISDIR, lambda: b.open(d))
    fails(errno.EISDIR, lambda: b.setattr(d, size=0))
    fails(errno.EISDIR, lambda: b.read_file("d"))
    with b.tmpfile(ROOT_INO) as temp:
        fails(errno.EISDIR, lambda: b.publish(temp, ROOT_INO, "d"))
    assert b.lookup(ROOT_INO, "d").is_dir


def test_enotempty_until_the_last_entry_is_gone(given: Given) -> None:
    b = given({"d": None, "d/f": b"x", "d/sub": None})
    d = ino(b, "d")
    fails(errno.ENOTEMPTY, lambda: b.rmdir(ROOT_INO, "d"))
    b.unlink(d, "f")
    fails(errno.ENOTEMPTY, lambda: b.rmdir(ROOT_INO, "d"))
    b.rmdir(d, "sub")
    b.rmdir(ROOT_INO, "d")
    assert ls(b) == []


def test_enametoolong_for_a_name_over_255_bytes(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.ENAMETOOLONG, lambda: b.create(ROOT_INO, LONG_NAME, 0o644))
    fails(errno.ENAMETOOLONG, lambda: b.mkdir(ROOT_INO, LONG_NAME, 0o755))
    fails(errno.ENAMETOOLONG, lambda: b.symlink(ROOT_INO, LONG_NAME, b"f"))
    fails(errno.ENAMETOOLONG, lambda: b.mknod(ROOT_INO, LONG_NAME, stat.S_IFIFO | 0o644))
    fails(errno.ENAMETOOLONG, lambda: b.link(ino(b, "f"), ROOT_INO, LONG_NAME))
    fails(errno.ENAMETOOLONG, lambda: b.rename(ROOT_INO, "f", ROOT_INO, LONG_NAME))
    b.create(ROOT_INO, "n" * 255, 0o644)[0].close()  # NAME_MAX itself is fine
    assert sorted(ls(b)) == sorted(["d", "f", "n" * 255])


def test_lookup_of_a_name_over_255_bytes_is_enametoolong(given: Given) -> None:
    b = given({})
    fails(errno.ENAMETOOLONG, lambda: b.lookup(ROOT_INO, LONG_NAME))


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "nul\0"])
def test_einval_for_a_name_that_cannot_be_an_entry(given: Given, bad: str) -> None:
    b = given({"f": b"x"})
    fails(errno.EINVAL, lambda: b.create(ROOT_INO, bad, 0o644))
    fails(errno.EINVAL, lambda: b.mkdir(ROOT_INO, bad, 0o755))
    fails(errno.EINVAL, lambda: b.mknod(ROOT_INO, bad, stat.S_IFIFO | 0o644))
    fails(errno.EINVAL, lambda: b.rename(ROOT_INO, "f", ROOT_INO, bad))
    assert ls(b) == ["f"]


def test_einval_for_readlink_of_something_not_a_symlink(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    fails(errno.EINVAL, lambda: b.readlink(ino(b, "f")))
    fails(errno.EINVAL, lambda: b.readlink(ino(b, "d")))


def test_erofs_for_every_change_to_a_read_only_backend(given: Given) -> None:
    b = given({"f": b"data", "d": None}, read_only=True)
    assert b.read_only
    f, d = ino(b, "f"), ino(b, "d")
    changes: list[Callable[[], object]] = [
        lambda: b.setattr(f, mode=0o600),
        lambda: b.setattr(d, mtime_ns=1),
        lambda: b.setattr(f, size=0),
        lambda: b.mkdir(ROOT_INO, "x", 0o755),
        lambda: b.create(ROOT_INO, "x", 0o644),
        lambda: b.open(f, os.O_WRONLY),
        lambda: b.open(f, os.O_RDWR),
        lambda: b.open(f, os.O_TRUNC),
        lambda: b.unlink(ROOT_INO, "f"),
        lambda: b.rmdir(ROOT_INO, "d"),
        lambda: b.rename(ROOT_INO, "f", ROOT_INO, "g"),
        lambda: b.link(f, ROOT_INO, "g"),
        lambda: b.symlink(ROOT_INO, "s", b"f"),
        lambda: b.mknod(ROOT_INO, "p", stat.S_IFIFO | 0o644),
        lambda: b.setxattr(f, b"user.a", b"1"),
        lambda: b.removexattr(f, b"user.a"),
        lambda: b.tmpfile(ROOT_INO),
        lambda: b.write_file(ROOT_INO, "f", b"new"),
        lambda: b.copy_file(f, ROOT_INO, "g"),
    ]
    for change in changes:
        fails(errno.EROFS, change)
    with b.open(f) as handle:
        # a handle opened for reading: EROFS, or EBADF as write(2) says
        for change in (lambda: handle.write(0, b"x"), lambda: handle.truncate(0)):
            with pytest.raises(OSError) as caught:
                change()
            assert caught.value.errno in (errno.EROFS, errno.EBADF)
        assert handle.read(0, 100) == b"data"
    assert ls(b) == ["d", "f"] and cat(b, "f") == b"data"
