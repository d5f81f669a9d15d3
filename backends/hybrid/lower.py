"""Confined access to hybrid mode's lower layer: a directory on the host.

Every path is opened relative to a file descriptor of the lower root with
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``: no symlink in the lower
tree is ever followed (the overlay shows symlinks as symlinks), and no path can
climb out of the root. Kernels without ``openat2`` get the same guarantee from
a component-by-component walk with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

import xxhash

from vfs.backends.host import join, open_beneath

# Errors that mean a lower path no longer leads to what was there.
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EXDEV)


class LowerTree:
    """A host directory read (and, by commit, written) only beneath its root."""

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.root = os.fspath(root)
        self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """A descriptor for lower-relative ``path``; the last component is never followed."""
        if not path:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=self.root_fd)
        try:
            return open_beneath(self.root_fd, path, flags, mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP and not flags & os.O_PATH:
                # A symlink where a file or directory was expected.
                raise OSError(errno.ELOOP, "lower path is a symlink", path) from None
            raise

    @contextlib.contextmanager
    def fd(self, path: str, flags: int, mode: int = 0o600) -> Iterator[int]:
        descriptor = self.open(path, flags, mode)
        try:
            yield descriptor
        finally:
            os.close(descriptor)

    # -- reading -----------------------------------------------------------

    def lstat(self, path: str) -> os.stat_result:
        try:
            with self.fd(path, os.O_PATH) as descriptor:
                return os.stat(descriptor)
        except (NotADirectoryError, OSError) as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                # A component that is no longer a directory: the path is gone.
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from exc
            raise

    def lstat_or_none(self, path: str) -> os.stat_result | None:
        try:
            return self.lstat(path)
        except FileNotFoundError:
            return None

    def listdir(self, path: str) -> list[tuple[str, os.stat_result]]:
        """Entries of a lower directory, sorted by name, with ``lstat`` results."""
        try:
            descriptor = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                return []
            raise
        try:
            found = []
            with os.scandir(descriptor) as entries:
                for entry in entries:
                    try:
                        found.append((entry.name, entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue
            found.sort()
            return found
        finally:
            os.close(descriptor)

    def readlink(self, path: str) -> bytes:
        parent, _, name = path.rpartition("/")
        with self.fd(parent, os.O_PATH | os.O_DIRECTORY) as descriptor:
            return os.readlink(os.fsencode(name), dir_fd=descriptor)

    def pread(self, path: str, offset: int, size: int) -> bytes:
        with self.fd(path, os.O_RDONLY) as descriptor:
            return read_at(descriptor, offset, size)

    def open_file_or_none(self, path: str) -> int | None:
        """A read descriptor for ``path`` while it is a regular file, else None.

        An upper file keeps showing the bytes of the lower file it was copied
        from; when that file is gone or became something else, nothing of it shows.
        """
        try:
            with self.fd(path, os.O_PATH) as probe:
                if not stat.S_ISREG(os.fstat(probe).st_mode):
                    return None  # never open a fifo or device just to find out
            descriptor = self.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            return None
        return descriptor

    def pread_file(self, path: str, offset: int, size: int) -> bytes:
        """Bytes of the regular file ``path``; nothing when it is no longer one."""
        descriptor = self.open_file_or_none(path)
        if descriptor is None:
            return b""
        try:
            return read_at(descriptor, offset, size)
        finally:
            os.close(descriptor)

    def content_hash(self, path: str) -> str:
        with self.fd(path, os.O_RDONLY) as descriptor:
            return hash_fd(descriptor)


def read_at(descriptor: int, offset: int, size: int) -> bytes:
    parts = []
    while size > 0:
        data = os.pread(descriptor, min(size, 1 << 24), offset)
        if not data:
            break
        parts.append(data)
        offset += len(data)
        size -= len(data)
    return b"".join(parts)


def hash_fd(descriptor: int) -> str:
    digest = xxhash.xxh3_128()
    offset = 0
    while data := os.pread(descriptor, 1 << 22, offset):
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


TREE_STAMP_PREFIX = "tree:"


def tree_stamp(lower: LowerTree, path: str) -> str:
    """A digest of every name and inode state in the lower tree under ``path``.

    Recorded in a directory's whiteout, it lets a commit that removes the
    directory tell whether anything inside was changed on disk since. Besides
    the type, size and mtime, it takes each object's inode number, link count
    and ctime: nobody can set a ctime back, so an edit whose mtime was restored
    (``touch -d``) or an object swapped for another of the same size shows too.
    """
    digest = xxhash.xxh3_128()
    pending = [path]
    while pending:
        directory = pending.pop()
        for name, st in lower.listdir(directory):
            child = join(directory, name)
            state = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_nlink)
            digest.update(os.fsencode(child) + b"\0" + repr(state).encode() + b"\0")
            if stat.S_ISDIR(st.st_mode):
                pending.append(child)
    return TREE_STAMP_PREFIX + digest.hexdigest()


def is_dir_stat(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)
