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
import shutil
import stat
from pathlib import Path

from vfs.backends.base import ROOT_INO, Attr, Backend
from vfs.backends.host import make_node

_PIECE = 1 << 20


def _same_file(source: Backend, attr: Attr, path: Path, st: os.stat_result) -> bool:
    if not stat.S_ISREG(st.st_mode) or st.st_size != attr.size:
        return False
    with open(path, "rb") as disk:
        offset = 0
        while offset < attr.size:
            want = source.read(attr.ino, offset, min(_PIECE, attr.size - offset))
            if disk.read(len(want)) != want:
                return False
            offset += len(want)
    return True


def _write_file(source: Backend, attr: Attr, path: Path) -> None:
    staged = path.with_name(f".{path.name}.restore-{os.getpid()}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
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
            os.unlink(staged)
        raise
    os.close(fd)
    os.replace(staged, path)


def _remove(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def write_tree(source: Backend, root: Path) -> None:
    """Make the tree under ``root`` equal ``source``'s tree (content, types, modes, mtimes)."""
    _write_dir(source, ROOT_INO, root)


def _write_dir(source: Backend, ino: int, directory: Path) -> None:
    wanted = {name: attr for name, attr, _offset in source.readdir(ino)}
    with os.scandir(directory) as scan:
        present = {item.name: item.stat(follow_symlinks=False) for item in scan}
    for name, st in present.items():
        attr = wanted.get(name)
        if attr is None or stat.S_IFMT(attr.mode) != stat.S_IFMT(st.st_mode):
            _remove(directory / name, st)
    for name, attr in wanted.items():
        path = directory / name
        st_or_none = present.get(name)
        if st_or_none is not None and stat.S_IFMT(attr.mode) != stat.S_IFMT(st_or_none.st_mode):
            st_or_none = None  # removed above
        if attr.is_dir:
            if st_or_none is None:
                os.mkdir(path, 0o700)
            _write_dir(source, attr.ino, path)
            os.chmod(path, attr.mode & 0o7777, follow_symlinks=False)
        elif stat.S_ISLNK(attr.mode):
            target = source.readlink(attr.ino)
            if st_or_none is not None and os.fsencode(os.readlink(path)) == target:
                continue
            if st_or_none is not None:
                path.unlink()
            os.symlink(target, path)
            continue
        elif attr.is_special:
            if st_or_none is not None and st_or_none.st_rdev != attr.rdev:
                path.unlink()  # another device number: a node cannot be changed
                st_or_none = None
            if st_or_none is None:
                make_node(path, attr.mode, attr.rdev)
            elif (st_or_none.st_mode & 0o7777) != (attr.mode & 0o7777):
                os.chmod(path, attr.mode & 0o7777)
        elif st_or_none is None or not _same_file(source, attr, path, st_or_none):
            _write_file(source, attr, path)
        elif (st_or_none.st_mode & 0o7777) != (attr.mode & 0o7777):
            os.chmod(path, attr.mode & 0o7777)
        os.utime(path, ns=(attr.atime_ns, attr.mtime_ns), follow_symlinks=False)
