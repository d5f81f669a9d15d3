"""The ``Backend`` interface in every mode, without FUSE: special files.

FIFOs, Unix sockets and character and block devices made by ``mknod`` are
stored with their type and ``rdev``, listed, renamed, linked and unlinked like
any other non-directory, and never opened by an engine (the kernel serves
their I/O through a mount). The ``hybrid-lower`` workspace starts with them in
the disk tree below the overlay.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from tests.support.backend_contract import Given, Special, cat, fails, ino, ls
from vfs.backends.base import ROOT_INO

NULL_DEVICE = os.makedev(1, 3)
DISK_DEVICE = os.makedev(8, 1)

EVERY_KIND = {
    "fifo": Special(stat.S_IFIFO | 0o640),
    "sock": Special(stat.S_IFSOCK | 0o755),
    "chr": Special(stat.S_IFCHR | 0o666, NULL_DEVICE),
    "blk": Special(stat.S_IFBLK | 0o660, DISK_DEVICE),
}

needs_mknod = pytest.mark.skipif(
    os.geteuid() != 0, reason="disk mode makes real device nodes, which needs CAP_MKNOD"
)


@needs_mknod
def test_mknod_stores_each_kind_with_its_type_mode_and_rdev(given: Given) -> None:
    b = given(EVERY_KIND)
    for name, special in EVERY_KIND.items():
        attr = b.lookup(ROOT_INO, name)
        assert (oct(attr.mode), attr.rdev, attr.nlink, attr.size) == (
            oct(special.mode), special.rdev, 1, 0,
        ), name  # fmt: skip
        assert attr.is_special and not attr.is_file
        assert b.getattr(attr.ino) == attr


def test_mknod_returns_the_new_inode_and_keeps_rdev_for_devices_only(given: Given) -> None:
    b = given({"d": None})
    attr = b.mknod(ino(b, "d"), "p", stat.S_IFIFO | 0o600, rdev=NULL_DEVICE, uid=0, gid=0)
    assert stat.S_ISFIFO(attr.mode) and stat.S_IMODE(attr.mode) == 0o600
    assert attr.rdev == 0  # a FIFO has no device number
    assert b.lookup(ino(b, "d"), "p") == attr


@pytest.mark.parametrize("kind", [stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, 0])
def test_mknod_of_a_type_that_is_not_special_is_einval(given: Given, kind: int) -> None:
    b = given({})
    fails(errno.EINVAL, lambda: b.mknod(ROOT_INO, "x", kind | 0o644))
    assert ls(b) == []


@needs_mknod
def test_readdir_gives_special_files_their_type(given: Given) -> None:
    b = given({"d": None, **{f"d/{name}": special for name, special in EVERY_KIND.items()}})
    listed = {name: stat.S_IFMT(attr.mode) for name, attr, _ in b.readdir(ino(b, "d"))}
    assert listed == {name: stat.S_IFMT(s.mode) for name, s in EVERY_KIND.items()}


def test_a_special_file_is_never_opened_or_read_by_the_engine(given: Given) -> None:
    b = given({"p": Special(stat.S_IFIFO | 0o644), "s": Special(stat.S_IFSOCK | 0o644)})
    for name in ("p", "s"):
        fails(errno.EINVAL, lambda name=name: b.open(ino(b, name)))
        fails(errno.EINVAL, lambda name=name: b.open(ino(b, name), os.O_WRONLY))
        fails(errno.EINVAL, lambda name=name: b.read_file(name))
        fails(errno.EINVAL, lambda name=name: b.setattr(ino(b, name), size=0))


def test_special_files_are_renamed_linked_and_unlinked(given: Given) -> None:
    b = given({"a": None, "b": None, "a/p": Special(stat.S_IFIFO | 0o644), "a/f": b"x"})
    fifo = ino(b, "a/p")
    b.rename(ino(b, "a"), "p", ino(b, "b"), "moved")
    assert ls(b, "a") == ["f"] and ino(b, "b/moved") == fifo
    assert stat.S_ISFIFO(b.lookup(ino(b, "b"), "moved").mode)
    linked = b.link(fifo, ROOT_INO, "again")
    assert linked.nlink == 2 and stat.S_ISFIFO(linked.mode)
    b.rename(ROOT_INO, "again", ino(b, "a"), "f")  # over a regular file
    assert stat.S_ISFIFO(b.resolve("a/f").mode)
    b.unlink(ino(b, "b"), "moved")
    assert b.getattr(ino(b, "a/f")).nlink == 1
    b.unlink(ino(b, "a"), "f")
    assert ls(b, "a") == [] and ls(b, "b") == []


def test_a_file_renamed_over_a_special_file_replaces_it(given: Given) -> None:
    b = given({"s": Special(stat.S_IFSOCK | 0o755), "f": b"data"})
    b.rename(ROOT_INO, "f", ROOT_INO, "s")
    assert ls(b) == ["s"] and cat(b, "s") == b"data"


def test_chmod_and_chown_of_a_special_file_keep_its_type(given: Given) -> None:
    b = given({"p": Special(stat.S_IFIFO | 0o644)})
    attr = b.setattr(ino(b, "p"), mode=0o600, uid=os.getuid(), gid=os.getgid())
    assert oct(attr.mode) == oct(stat.S_IFIFO | 0o600)
    assert oct(b.resolve("p").mode) == oct(stat.S_IFIFO | 0o600)


def test_user_extended_attributes_on_a_special_file_are_eperm_as_on_linux(given: Given) -> None:
    b = given({"p": Special(stat.S_IFIFO | 0o644), "s": Special(stat.S_IFSOCK | 0o644)})
    for name in ("p", "s"):
        fails(errno.EPERM, lambda name=name: b.setxattr(ino(b, name), b"user.tag", b"1"))
        fails(errno.ENODATA, lambda name=name: b.getxattr(ino(b, name), b"user.tag"))


def test_mknod_in_a_lower_directory_copies_only_the_directory_up(given: Given) -> None:
    b = given({"d": None, "d/keep": b"k"})
    made = b.mknod(ino(b, "d"), "p", stat.S_IFIFO | 0o644)
    assert ls(b, "d") == ["keep", "p"] and b.resolve("d/p") == made
    assert cat(b, "d/keep") == b"k"
