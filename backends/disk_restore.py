"""Write a saved tree back to a disk directory: the rollback of a disk-mode checkpoint.

Objects the saved tree lacks, or has as another type, are removed; changed
files are written to a temporary name beside them and renamed over the old
ones, so a reader sees the old file or the new, never a mix. Unchanged files
are left alone. A directory on the disk is never followed through a symlink:
a symlink where the saved tree has a directory is removed first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from vfs.backends.base import ROOT_INO, Attr, Backend
from vfs.backends.disk.backend import TEMP_PREFIX
from vfs.backends.host import make_node

_PIECE = 1 << 20


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _same_file(source: Backend, attr: Attr, name: str, dir_fd: int, st: os.stat_result) -> bool:
    if not stat.S_ISREG(st.st_mode) or st.st_size != attr.size:
        return False
    with open(
        os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd), "rb"
    ) as disk:
        offset = 0
        while offset < attr.size:
            want = source.read(attr.ino, offset, min(_PIECE, attr.size - offset))
            if disk.read(len(want)) != want:
                return False
            offset += len(want)
    return True


def _write_file(source: Backend, attr: Attr, name: str, dir_fd: int) -> None:
    # A reserved temp name: never listed, and removed as an orphan if this process dies.
    staged = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(staged, flags, 0o600, dir_fd=dir_fd)
    try:
        offset = 0
        while offset < attr.size:
            piece = source.read(attr.ino, offset, min(_PIECE, attr.size - offset))
            os.pwrite(fd, piece, offset)
            offset += len(piece)
        os.ftruncate(fd, attr.size)
        os.fchmod(fd, attr.mode & 0o7777)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(staged, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _remove(name: str, dir_fd: int, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def write_tree(source: Backend, root: Path) -> None:
    """Make the tree under ``root`` equal ``source``'s tree (content, types, modes, mtimes).

    Each directory is reached from its parent's descriptor, never by a whole
    path: a tree deeper than ``PATH_MAX`` is written back as the host holds it.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_dir(source, ROOT_INO, fd)
    finally:
        os.close(fd)


def _write_dir(source: Backend, ino: int, dir_fd: int) -> None:
    wanted = {name: attr for name, attr, _offset in source.readdir(ino)}
    with os.scandir(dir_fd) as scan:
        present = {item.name: item.stat(follow_symlinks=False) for item in scan}
    for name, st in present.items():
        attr = wanted.get(name)
        if attr is None or stat.S_IFMT(attr.mode) != stat.S_IFMT(st.st_mode):
            _remove(name, dir_fd, st)
    for name, attr in wanted.items():
        st_or_none = present.get(name)
        if st_or_none is not None and stat.S_IFMT(attr.mode) != stat.S_IFMT(st_or_none.st_mode):
            st_or_none = None  # removed above
        if attr.is_dir:
            if st_or_none is None:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _write_dir(source, attr.ino, fd)
                os.fchmod(fd, attr.mode & 0o7777)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(attr.mode):
            target = source.readlink(attr.ino)
            if st_or_none is not None and os.readlink(os.fsencode(name), dir_fd=dir_fd) == target:
                continue
            if st_or_none is not None:
                os.unlink(name, dir_fd=dir_fd)
            os.symlink(target, name, dir_fd=dir_fd)
            continue
        elif attr.is_special:
            if st_or_none is not None and st_or_none.st_rdev != attr.rdev:
                os.unlink(name, dir_fd=dir_fd)  # another device number: a node cannot be changed
                st_or_none = None
            if st_or_none is None:
                make_node(name, attr.mode, attr.rdev, dir_fd=dir_fd)
            elif (st_or_none.st_mode & 0o7777) != (attr.mode & 0o7777):
                os.chmod(name, attr.mode & 0o7777, dir_fd=dir_fd)
        elif st_or_none is None or not _same_file(source, attr, name, dir_fd, st_or_none):
            _write_file(source, attr, name, dir_fd)
        elif (st_or_none.st_mode & 0o7777) != (attr.mode & 0o7777):
            os.chmod(name, attr.mode & 0o7777, dir_fd=dir_fd)
        os.utime(name, ns=(attr.atime_ns, attr.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
