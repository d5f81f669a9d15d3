"""The reserved ``/.vfs`` tree: run artifacts as read-only files in every mode.

:class:`ReservedTree` wraps the mode's backend and delegates everything to it
except the ``/.vfs`` subtree, which it serves itself::

    /.vfs/runs/<run id>/<output name>
    /.vfs/checkpoints/<checkpoint name>/<path>

Inode numbers there come from a range no backend hands out (``>= 2**62``), so
the FUSE adapter and fsspec see ordinary inodes. Every change inside the tree
fails with ``EROFS``. ``/.vfs`` is looked up by name but not listed in the
root directory, so tree walks (``find``, copies, mode switches) never copy
artifacts into files. The wrapper reads artifacts through the small
:class:`RunFiles` protocol, not through SQL of its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vfs.backends.base import ROOT_INO, WRITE_FLAGS, Attr, Backend, Handle, StatFs
from vfs.backends.checkpoint_view import CHECKPOINTS_NAME, CheckpointDirs, CheckpointSource
from vfs.backends.chunks import SharedChunks

RESERVED_NAME = ".vfs"
RUNS_NAME = "runs"
RESERVED_BASE = 1 << 62
VFS_INO = RESERVED_BASE
RUNS_INO = RESERVED_BASE + 1
CHECKPOINTS_INO = RESERVED_BASE + 2
# Run directories and output files get disjoint sub-ranges of the reserved range.
RUN_BASE = RESERVED_BASE + (1 << 48)
FILE_BASE = RESERVED_BASE + (2 << 48)
# Checkpoint files (backends/checkpoint_view.py) are numbered above every run file.
CHECKPOINT_BASE = RESERVED_BASE + (3 << 48)
DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444


@dataclass(frozen=True, slots=True)
class RunDir:
    """A run as a directory: ``number`` is stable for the run's lifetime."""

    number: int
    name: str
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class RunFile:
    """One output of a run as a file."""

    number: int
    name: str
    size: int
    mtime_ns: int
    digest: str


class RunFiles(Protocol):
    """What the reserved tree needs to know about run artifacts."""

    def run_dirs(self) -> list[RunDir]: ...

    def run_dir(self, *, name: str | None = None, number: int | None = None) -> RunDir | None: ...

    def run_files(self, run_number: int) -> list[RunFile]: ...

    def run_file(
        self, *, run_number: int | None = None, name: str | None = None, number: int | None = None
    ) -> RunFile | None: ...

    def read_run_file(self, number: int, offset: int, size: int) -> bytes: ...


def is_reserved(ino: int) -> bool:
    return ino >= RESERVED_BASE


def _in_reserved(path: str) -> bool:
    """Whether ``path`` starts with the ``/.vfs`` name (symlinks are not followed here)."""
    if RESERVED_NAME not in path:
        return False  # every path is checked: most never mention the name
    first = next((part for part in path.split("/") if part not in ("", ".")), None)
    return first == RESERVED_NAME


def _read_only(what: object = None) -> OSError:
    return OSError(errno.EROFS, "Read-only file system", None if what is None else str(what))


class ReservedHandle(Handle):
    """An open artifact: reads only."""

    def __init__(self, tree: ReservedTree, ino: int) -> None:
        self.tree = tree
        self.ino = ino

    def read(self, offset: int, size: int) -> bytes:
        return self.tree.files.read_run_file(self.ino - FILE_BASE, offset, size)

    def write(self, offset: int, data: bytes) -> int:
        raise _read_only(self.ino)

    def truncate(self, size: int) -> None:
        raise _read_only(self.ino)

    def flush(self) -> None:
        pass

    def getattr(self) -> Attr:
        return self.tree.getattr(self.ino)

    def close(self) -> None:
        pass


class ReservedTree(Backend):
    """A backend that adds the read-only ``/.vfs`` tree in front of ``inner``."""

    def __init__(
        self, inner: Backend, files: RunFiles, checkpoints: CheckpointSource | None = None
    ) -> None:
        self.inner = inner
        self.files = files
        self.checkpoints = (
            None
            if checkpoints is None
            else CheckpointDirs(checkpoints, CHECKPOINTS_INO, CHECKPOINT_BASE)
        )
        self._started_ns = time.time_ns()
        # What the Backend class declares is copied, so it never reaches __getattr__.
        self.mode = inner.mode
        self.read_only = inner.read_only
        self.transactional = bool(getattr(inner, "transactional", False))

    # Anything else a caller wants from the wrapped backend (mode-specific methods).
    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "files", "checkpoints"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- the reserved tree -------------------------------------------------

    def _dir_attr(self, ino: int, mtime_ns: int, nlink: int = 2) -> Attr:
        return Attr(
            ino=ino,
            mode=DIR_MODE,
            nlink=nlink,
            uid=os.getuid(),
            gid=os.getgid(),
            size=0,
            atime_ns=mtime_ns,
            mtime_ns=mtime_ns,
            ctime_ns=mtime_ns,
            btime_ns=mtime_ns,
        )

    def _file_attr(self, entry: RunFile) -> Attr:
        return Attr(
            ino=FILE_BASE + entry.number,
            mode=FILE_MODE,
            nlink=1,
            uid=os.getuid(),
            gid=os.getgid(),
            size=entry.size,
            atime_ns=entry.mtime_ns,
            mtime_ns=entry.mtime_ns,
            ctime_ns=entry.mtime_ns,
            btime_ns=entry.mtime_ns,
        )

    def _checkpoint_dirs(self, ino: int) -> CheckpointDirs | None:
        dirs = self.checkpoints
        return dirs if dirs is not None and dirs.owns(ino) else None

    def _reserved_getattr(self, ino: int) -> Attr:
        if ino in (VFS_INO, RUNS_INO) or (ino == CHECKPOINTS_INO and self.checkpoints):
            return self._dir_attr(ino, self._started_ns)
        if dirs := self._checkpoint_dirs(ino):
            return dirs.getattr(ino)
        if RUN_BASE <= ino < FILE_BASE:
            run = self.files.run_dir(number=ino - RUN_BASE)
            if run is not None:
                return self._dir_attr(ino, run.mtime_ns)
        elif ino >= FILE_BASE:
            entry = self.files.run_file(number=ino - FILE_BASE)
            if entry is not None:
                return self._file_attr(entry)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")

    def _reserved_lookup(self, parent: int, name: str) -> Attr:
        if parent == VFS_INO and name == RUNS_NAME:
            return self._reserved_getattr(RUNS_INO)
        if parent == VFS_INO and name == CHECKPOINTS_NAME and self.checkpoints:
            return self._reserved_getattr(CHECKPOINTS_INO)
        if dirs := self._checkpoint_dirs(parent):
            return dirs.lookup(parent, name)
        if parent == RUNS_INO:
            run = self.files.run_dir(name=name)
            if run is not None:
                return self._dir_attr(RUN_BASE + run.number, run.mtime_ns)
        elif RUN_BASE <= parent < FILE_BASE:
            entry = self.files.run_file(run_number=parent - RUN_BASE, name=name)
            if entry is not None:
                return self._file_attr(entry)
        elif parent >= FILE_BASE:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)

    def _reserved_entries(self, ino: int) -> list[tuple[str, Attr]]:
        if ino == VFS_INO:
            found = [(RUNS_NAME, self._reserved_getattr(RUNS_INO))]
            if self.checkpoints:
                found.append((CHECKPOINTS_NAME, self._reserved_getattr(CHECKPOINTS_INO)))
            return found
        if ino == RUNS_INO:
            return [
                (run.name, self._dir_attr(RUN_BASE + run.number, run.mtime_ns))
                for run in self.files.run_dirs()
            ]
        if RUN_BASE <= ino < FILE_BASE:
            return [(f.name, self._file_attr(f)) for f in self.files.run_files(ino - RUN_BASE)]
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {ino}")

    def _guard(self, parent: int, name: str | None = None) -> None:
        """Refuse a change inside the reserved tree or to the ``/.vfs`` name itself."""
        if is_reserved(parent) or (parent == ROOT_INO and name == RESERVED_NAME):
            raise _read_only(name)

    # -- inode operations --------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        if is_reserved(parent):
            return self._reserved_lookup(parent, name)
        if parent == ROOT_INO and name == RESERVED_NAME:
            return self._reserved_getattr(VFS_INO)
        return self.inner.lookup(parent, name)

    def getattr(self, ino: int) -> Attr:
        if is_reserved(ino):
            return self._reserved_getattr(ino)
        return self.inner.getattr(ino)

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        if is_reserved(ino):
            raise _read_only(f"inode {ino}")
        return self.inner.setattr(ino, **fields)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        if not is_reserved(ino):
            for name, attr, next_offset in self.inner.readdir(ino, offset):
                if not (ino == ROOT_INO and name == RESERVED_NAME):
                    yield name, attr, next_offset
            return
        if dirs := self._checkpoint_dirs(ino):
            yield from dirs.readdir(ino, offset)
            return
        # Entries are ordered by their stable number, so the position is a stable offset.
        for name, attr in self._reserved_entries(ino):
            if attr.ino > offset:
                yield name, attr, attr.ino

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self._guard(parent, name)
        return self.inner.mkdir(parent, name, mode, uid, gid)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self._guard(parent, name)
        return self.inner.create(parent, name, mode, uid, gid)

    def open(self, ino: int, flags: int = 0) -> Handle:
        if not is_reserved(ino):
            return self.inner.open(ino, flags)
        if dirs := self._checkpoint_dirs(ino):
            return dirs.open(ino, flags)
        attr = self._reserved_getattr(ino)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
        if flags & WRITE_FLAGS:
            raise _read_only(f"inode {ino}")
        return ReservedHandle(self, ino)

    def unlink(self, parent: int, name: str) -> None:
        self._guard(parent, name)
        self.inner.unlink(parent, name)

    def rmdir(self, parent: int, name: str) -> None:
        self._guard(parent, name)
        self.inner.rmdir(parent, name)

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self._guard(parent, name)
        self._guard(new_parent, new_name)
        self.inner.rename(parent, name, new_parent, new_name, flags)

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        if is_reserved(ino):
            raise _read_only(new_name)
        self._guard(new_parent, new_name)
        return self.inner.link(ino, new_parent, new_name)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self._guard(parent, name)
        return self.inner.symlink(parent, name, target, uid, gid)

    def mknod(
        self, parent: int, name: str, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0
    ) -> Attr:
        self._guard(parent, name)
        return self.inner.mknod(parent, name, mode, rdev, uid, gid)

    def readlink(self, ino: int) -> bytes:
        if dirs := self._checkpoint_dirs(ino):
            return dirs.readlink(ino)
        if is_reserved(ino):
            raise OSError(errno.EINVAL, "Invalid argument", f"inode {ino}")
        return self.inner.readlink(ino)

    def statfs(self) -> StatFs:
        return self.inner.statfs()

    def getxattr(self, ino: int, name: bytes) -> bytes:
        if dirs := self._checkpoint_dirs(ino):
            return dirs.getxattr(ino, name)
        if is_reserved(ino):
            self._reserved_getattr(ino)
            raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
        return self.inner.getxattr(ino, name)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        if is_reserved(ino):
            raise _read_only(f"inode {ino}")
        self.inner.setxattr(ino, name, value, flags)

    def listxattr(self, ino: int) -> list[bytes]:
        if dirs := self._checkpoint_dirs(ino):
            return dirs.listxattr(ino)
        if is_reserved(ino):
            self._reserved_getattr(ino)
            return []
        return self.inner.listxattr(ino)

    def removexattr(self, ino: int, name: bytes) -> None:
        if is_reserved(ino):
            raise _read_only(f"inode {ino}")
        self.inner.removexattr(ino, name)

    # -- whole-file operations -------------------------------------------------

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self._guard(parent)
        return self.inner.tmpfile(parent, mode)

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self._guard(parent, name)
        return self.inner.publish(handle, parent, name)

    def checksum(self, ino: int) -> str:
        if not is_reserved(ino):
            return self.inner.checksum(ino)
        if dirs := self._checkpoint_dirs(ino):
            return dirs.checksum(ino)
        entry = self.files.run_file(number=ino - FILE_BASE) if ino >= FILE_BASE else None
        if entry is None:
            raise IsADirectoryError(errno.EISDIR, "not a regular file", f"inode {ino}")
        return entry.digest

    def shared_chunks(self, ino: int) -> SharedChunks | None:
        return None if is_reserved(ino) else self.inner.shared_chunks(ino)

    def read(self, ino: int, offset: int, size: int) -> bytes:
        if is_reserved(ino):
            return super().read(ino, offset, size)
        return self.inner.read(ino, offset, size)

    def read_file(self, path: str) -> bytes:
        if _in_reserved(path):
            return super().read_file(path)
        return self.inner.read_file(path)

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        self._guard(parent, name)
        return self.inner.write_file(parent, name, data, mode)

    def write_plain(
        self, path: str, data: bytes, mode: int = 0o644, *, exclusive: bool = False
    ) -> Attr | None:
        # The wrapped engine's fast path only writes where no symlink leads, so
        # never into /.vfs unless the path itself says so.
        if _in_reserved(path):
            return None
        return self.inner.write_plain(path, data, mode, exclusive=exclusive)

    def sync_ahead(self, handles: Sequence[Handle]) -> None:
        self.inner.sync_ahead(handles)

    def snapshot(self) -> contextlib.AbstractContextManager[object]:
        return self.inner.snapshot()

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        self._guard(parent, name)
        if is_reserved(ino):
            # An artifact copied out is read and written like any other file.
            return super().copy_file(ino, parent, name)
        return self.inner.copy_file(ino, parent, name)

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.inner.transaction()

    # -- paths: the wrapped backend's own (faster) walk, except into /.vfs ----------

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        if _in_reserved(path):
            return super().resolve(path, follow=follow)
        return self.inner.resolve(path, follow=follow)

    def resolve_parent(self, path: str, *, follow: bool = False) -> tuple[int, str]:
        if _in_reserved(path):
            return super().resolve_parent(path, follow=follow)
        return self.inner.resolve_parent(path, follow=follow)

    def reclaim_orphans(self) -> int:
        return self.inner.reclaim_orphans()

    def forget(self, ino: int) -> None:
        if not is_reserved(ino):
            self.inner.forget(ino)

    def close(self) -> None:
        self.inner.close()
