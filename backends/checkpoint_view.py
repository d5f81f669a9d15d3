"""``/.vfs/checkpoints/<name>/...``: every checkpoint's files, read-only, in the live tree.

:class:`CheckpointDirs` serves the part of the reserved ``/.vfs`` tree below
``checkpoints``. Each checkpoint is read through its own read-only backend (a
:class:`CheckpointSource` hands them out); this module only renumbers their
inodes into a sub-range of the reserved range, so the FUSE adapter and fsspec
see ordinary, distinct inodes. Numbers are handed out on first sight and kept
for the life of the object (a mount's lifetime), as a kernel expects.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import Protocol

from vfs.backends.base import ROOT_INO, WRITE_FLAGS, Attr, Backend, Handle

CHECKPOINTS_NAME = "checkpoints"


class CheckpointSource(Protocol):
    """What the reserved tree needs to know about checkpoints."""

    def trees(self) -> list[tuple[int, str, float]]:
        """``(id, name, created_at)`` of every checkpoint."""
        ...

    def tree(self, checkpoint_id: int) -> Backend | None:
        """A read-only backend over checkpoint ``checkpoint_id``, or None if it is gone."""
        ...


class _Handle(Handle):
    def __init__(self, dirs: CheckpointDirs, ino: int, inner: Handle) -> None:
        self.dirs = dirs
        self.ino = ino
        self.inner = inner

    def read(self, offset: int, size: int) -> bytes:
        return self.inner.read(offset, size)

    def write(self, offset: int, data: bytes) -> int:
        raise OSError(errno.EROFS, "Read-only file system", "checkpoint")

    def truncate(self, size: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system", "checkpoint")

    def flush(self) -> None:
        pass

    def getattr(self) -> Attr:
        return self.dirs.getattr(self.ino)

    def close(self) -> None:
        self.inner.close()


class CheckpointDirs:
    """The inodes of ``/.vfs/checkpoints``: ``top`` itself and numbers from ``base`` up."""

    def __init__(self, source: CheckpointSource, top: int, base: int) -> None:
        self.source = source
        self.top = top
        self.base = base
        self._outer: dict[tuple[int, int], int] = {}
        self._inner: dict[int, tuple[int, int]] = {}

    def owns(self, ino: int) -> bool:
        return ino == self.top or ino >= self.base

    def _number(self, checkpoint_id: int, inner_ino: int) -> int:
        key = (checkpoint_id, inner_ino)
        outer = self._outer.get(key)
        if outer is None:
            outer = self.base + len(self._outer)
            self._outer[key] = outer
            self._inner[outer] = key
        return outer

    def _shown(self, checkpoint_id: int, attr: Attr) -> Attr:
        return attr.with_(ino=self._number(checkpoint_id, attr.ino))

    def _split(self, ino: int) -> tuple[Backend, int, int]:
        found = self._inner.get(ino)
        tree = None if found is None else self.source.tree(found[0])
        if found is None or tree is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return tree, found[0], found[1]

    def top_attr(self, mtime_ns: int) -> Attr:
        return Attr(ino=self.top, mode=stat.S_IFDIR | 0o555, nlink=2, uid=os.getuid(),
                    gid=os.getgid(), size=0, atime_ns=mtime_ns, mtime_ns=mtime_ns,
                    ctime_ns=mtime_ns, btime_ns=mtime_ns)  # fmt: skip

    def getattr(self, ino: int) -> Attr:
        tree, cid, inner = self._split(ino)
        return self._shown(cid, tree.getattr(inner))

    def lookup(self, parent: int, name: str) -> Attr:
        if parent == self.top:
            for cid, cp_name, _created in self.source.trees():
                tree = self.source.tree(cid) if cp_name == name else None
                if tree is not None:
                    return self._shown(cid, tree.getattr(ROOT_INO))
            raise FileNotFoundError(errno.ENOENT, "no such checkpoint", name)
        tree, cid, inner = self._split(parent)
        return self._shown(cid, tree.lookup(inner, name))

    def readdir(self, ino: int, offset: int) -> Iterator[tuple[str, Attr, int]]:
        if ino == self.top:
            # Checkpoint ids only grow: they are the stable offsets.
            for cid, name, _created in self.source.trees():
                tree = self.source.tree(cid) if cid > offset else None
                if tree is not None:
                    yield name, self._shown(cid, tree.getattr(ROOT_INO)), cid
            return
        tree, cid, inner = self._split(ino)
        for name, attr, next_offset in tree.readdir(inner, offset):
            yield name, self._shown(cid, attr), next_offset

    def open(self, ino: int, flags: int) -> Handle:
        if flags & WRITE_FLAGS:
            raise OSError(errno.EROFS, "Read-only file system", f"inode {ino}")
        tree, _cid, inner = self._split(ino)
        return _Handle(self, ino, tree.open(inner, flags))

    def read(self, ino: int, offset: int, size: int) -> bytes:
        tree, _cid, inner = self._split(ino)
        return tree.read(inner, offset, size)

    def readlink(self, ino: int) -> bytes:
        tree, _cid, inner = self._split(ino)
        return tree.readlink(inner)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        tree, _cid, inner = self._split(ino)
        return tree.getxattr(inner, name)

    def listxattr(self, ino: int) -> list[bytes]:
        tree, _cid, inner = self._split(ino)
        return tree.listxattr(inner)

    def checksum(self, ino: int) -> str:
        tree, _cid, inner = self._split(ino)
        return tree.checksum(inner)
