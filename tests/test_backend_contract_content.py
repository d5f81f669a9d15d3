"""The ``Backend`` interface (backends/base.py) in every mode, without FUSE: content.

Extended attributes, truncation and holes, files unlinked while open, symlinks,
attributes and whole-file replacement. Each test runs in every mode through the
``given`` fixture (tests/support/backend_contract.py).
"""

from __future__ import annotations

import errno
import os

import pytest

from tests.support.backend_contract import Given, cat, fails, ino, ls
from vfs.backends.base import ROOT_INO

# -- xattrs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["f", "d", ""])
def test_xattr_create_and_replace_flags(given: Given, path: str) -> None:
    b = given({"f": b"x", "d": None})
    node = ino(b, path)
    b.setxattr(node, b"user.color", b"blue", os.XATTR_CREATE)
    fails(errno.EEXIST, lambda: b.setxattr(node, b"user.color", b"red", os.XATTR_CREATE))
    fails(errno.ENODATA, lambda: b.setxattr(node, b"user.size", b"1", os.XATTR_REPLACE))
    b.setxattr(node, b"user.color", b"green", os.XATTR_REPLACE)
    b.setxattr(node, b"user.empty", b"")
    assert b.getxattr(node, b"user.color") == b"green"
    assert b.getxattr(node, b"user.empty") == b""
    assert {b"user.color", b"user.empty"} <= set(b.listxattr(node))
    b.removexattr(node, b"user.color")
    fails(errno.ENODATA, lambda: b.getxattr(node, b"user.color"))
    fails(errno.ENODATA, lambda: b.removexattr(node, b"user.color"))
    assert b"user.color" not in b.listxattr(node)


def test_a_missing_xattr_is_enodata(given: Given) -> None:
    b = given({"f": b"x"})
    fails(errno.ENODATA, lambda: b.getxattr(ino(b, "f"), b"user.never"))


def test_xattrs_follow_the_inode_through_renames_and_links(given: Given) -> None:
    b = given({"f": b"x"})
    b.setxattr(ino(b, "f"), b"user.tag", b"v")
    b.rename(ROOT_INO, "f", ROOT_INO, "g")
    b.link(ino(b, "g"), ROOT_INO, "h")
    assert b.getxattr(ino(b, "h"), b"user.tag") == b"v"


def test_an_unknown_xattr_namespace_is_eopnotsupp(given: Given) -> None:
    b = given({"f": b"x"})
    f = ino(b, "f")
    fails(errno.EOPNOTSUPP, lambda: b.setxattr(f, b"bogus.name", b"1"))
    fails(errno.EOPNOTSUPP, lambda: b.getxattr(f, b"bogus.name"))
    fails(errno.EOPNOTSUPP, lambda: b.removexattr(f, b"bogus.name"))


# -- truncate ----------------------------------------------------------------------------


def test_truncate_down_then_up_reads_zeros_after_the_cut(given: Given) -> None:
    data = bytes(range(256)) * 800  # 200 KiB, several chunks
    b = given({"f": data})
    f = ino(b, "f")
    b.setattr(f, size=70_000)
    assert b.getattr(f).size == 70_000
    b.setattr(f, size=len(data))
    assert cat(b, "f") == data[:70_000] + bytes(len(data) - 70_000)


def test_handle_truncate_down_and_up_zero_fills(given: Given) -> None:
    b = given({"f": b"abcdef"})
    with b.open(ino(b, "f"), os.O_RDWR) as handle:
        handle.truncate(2)
        assert handle.read(0, 100) == b"ab"
        handle.truncate(5)
        assert handle.read(0, 100) == b"ab\0\0\0"
        assert handle.getattr().size == 5
    assert cat(b, "f") == b"ab\0\0\0"


def test_a_write_past_the_end_leaves_a_hole_of_zeros(given: Given) -> None:
    b = given({"f": b"head"})
    with b.open(ino(b, "f"), os.O_RDWR) as handle:
        handle.write(300_000, b"tail")
    assert cat(b, "f") == b"head" + bytes(300_000 - 4) + b"tail"


def test_o_append_writes_at_the_end_whatever_the_offset(given: Given) -> None:
    b = given({"log": b"one\n"})
    with b.open(ino(b, "log"), os.O_WRONLY | os.O_APPEND) as handle:
        handle.write(0, b"two\n")
        handle.write(0, b"three\n")
        handle.fsync()
        handle.fsync(datasync=True)
    assert cat(b, "log") == b"one\ntwo\nthree\n"


def test_open_with_o_trunc_empties_the_file(given: Given) -> None:
    b = given({"f": b"old content"})
    b.open(ino(b, "f"), os.O_WRONLY | os.O_TRUNC).close()
    assert b.getattr(ino(b, "f")).size == 0 and cat(b, "f") == b""


# -- unlink while open -------------------------------------------------------------------------


def test_an_unlinked_open_file_still_reads_and_writes(given: Given) -> None:
    b = given({"f": b"still here", "other": b"x"})
    handle = b.open(ino(b, "f"), os.O_RDWR)
    try:
        b.unlink(ROOT_INO, "f")
        fails(errno.ENOENT, lambda: b.lookup(ROOT_INO, "f"))
        assert ls(b) == ["other"]
        assert handle.read(0, 100) == b"still here"
        handle.write(0, b"STILL")
        handle.write(10, b", and longer")
        assert handle.read(0, 100) == b"STILL here, and longer"
        assert handle.getattr().nlink == 0
        assert b.getattr(handle.ino).nlink == 0  # the inode lives while it is open
    finally:
        handle.close()
    assert ls(b) == ["other"]


# -- symlinks, attributes, whole-file replacement -------------------------------------------


def test_symlink_and_readlink_round_trip_without_following(given: Given) -> None:
    b = given({"d": None})
    link = b.symlink(ino(b, "d"), "s", b"does/not/exist")
    assert link.is_link and link.size == len(b"does/not/exist")
    assert b.lookup(ino(b, "d"), "s").is_link
    assert b.readlink(link.ino) == b"does/not/exist"


def test_setattr_keeps_the_file_type_and_nanosecond_times(given: Given) -> None:
    b = given({"f": b"x", "d": None})
    for path in ("f", "d"):
        node = ino(b, path)
        kind = b.getattr(node).mode & ~0o7777
        attr = b.setattr(node, mode=0o4711, uid=1234, gid=99, mtime_ns=1_234_567_891_123_456_789)
        assert (attr.mode & ~0o7777, attr.mode & 0o7777) == (kind, 0o4711)
        assert (attr.uid, attr.gid, attr.mtime_ns) == (1234, 99, 1_234_567_891_123_456_789)
        assert b.getattr(node) == attr
        assert b.setattr(node, atime_ns=5_000).mtime_ns == attr.mtime_ns  # one time, not both


def test_publish_replaces_a_file_whole_and_an_open_reader_keeps_the_old(given: Given) -> None:
    b = given({"d": None, "d/doc": b"old version"})
    d = ino(b, "d")
    reader = b.open(ino(b, "d/doc"))
    with b.tmpfile(d, 0o640) as temp:
        temp.write(0, b"new version, longer")
        assert ls(b, "d") == ["doc"]  # a tmpfile has no name
        assert cat(b, "d/doc") == b"old version"
        attr = b.publish(temp, d, "doc")
    assert attr.mode & 0o7777 == 0o640
    assert cat(b, "d/doc") == b"new version, longer"
    assert reader.read(0, 100) == b"old version"
    reader.close()
    assert ls(b, "d") == ["doc"]


def test_equal_content_has_an_equal_checksum_and_copies_keep_it(given: Given) -> None:
    data = bytes(range(256)) * 1000
    b = given({"a": data, "b": data, "c": data[:-1] + b"!"})
    assert b.checksum(ino(b, "a")) == b.checksum(ino(b, "b")) != b.checksum(ino(b, "c"))
    b.setattr(ino(b, "a"), mode=0o640)
    copied = b.copy_file(ino(b, "a"), ROOT_INO, "c")
    assert copied.ino != ino(b, "a") and copied.mode & 0o7777 == 0o640
    assert cat(b, "c") == data and b.checksum(copied.ino) == b.checksum(ino(b, "a"))
