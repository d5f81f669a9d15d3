"""What ties hybrid mode's two layers together: inode numbers for lower-only
objects, where such an object was found, and the read-only handle of a lower file."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash

from backends.base import Attr, Handle
from backends.overlay_lower import read_at
from backends.sqlite_handle import SqliteHandle

if TYPE_CHECKING:
    from backends.hybrid import HybridBackend

LOWER_INO_BASE = 1 << 61  # below the reserved /.vfs range (1 << 62)
# Lower objects whose natural number is taken, or that live on another device
# than the lower root, are numbered by a hash in this half of the range.
_HASHED = 1 << 60


def lower_ino(st: os.stat_result) -> int:
    """The natural number of a lower object on the lower root's device."""
    return LOWER_INO_BASE | (st.st_ino & (_HASHED - 1))


def hashed_ino(st: os.stat_result, path: str, salt: int = 0) -> int:
    """A number for the lower object ``st`` found at ``path``, from neither alone."""
    key = f"{st.st_dev}:{st.st_ino}:{salt}:{path}".encode(errors="surrogateescape")
    return LOWER_INO_BASE | _HASHED | (xxhash.xxh3_64_intdigest(key) & (_HASHED - 1))


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def lower_attr(ino: int, st: os.stat_result) -> Attr:
    return Attr(
        ino=ino,
        mode=st.st_mode,
        nlink=st.st_nlink,
        uid=st.st_uid,
        gid=st.st_gid,
        size=0 if stat.S_ISDIR(st.st_mode) else st.st_size,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        btime_ns=st.st_ctime_ns,
        rdev=st.st_rdev,
    )


@dataclass(frozen=True, slots=True)
class LowerRef:
    """Where a lower-only object was found: its merged parent and lower path."""

    parent: int
    name: str
    path: str


@dataclass(frozen=True, slots=True)
class Backing:
    """The lower file under an upper file, and how much of it still shows."""

    path: str
    limit: int


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the bytes of an upper file that was copied from a lower file come from.

    Below ``limit``, a chunk with no ``file_chunks`` row is the lower file's.
    ``live`` marks a file whose content never changed: it shows the lower
    file as it is now (size, bytes, and ``mtime_ns`` unless set in the overlay).
    """

    path: str
    limit: int
    size: int
    live: bool = False
    mtime_ns: int | None = None


class OverlayHandle(SqliteHandle):
    """An upper file open for writing: the first write takes the lower file as it
    is then as the base, since until then the overlay showed it live."""

    backend: HybridBackend

    def flush(self) -> None:
        if not self.dirty and not self.end:
            return
        with self.backend.db.write():
            self.backend.rebase(self.ino)
            super().flush()


class LowerHandle(Handle):
    """A lower file opened for reading: bytes come straight from the disk file.

    If the file is copied up meanwhile (written through another handle), reads
    follow it into the upper layer.
    """

    def __init__(self, backend: HybridBackend, ino: int, descriptor: int) -> None:
        self.backend = backend
        self.ino = ino
        self.descriptor = descriptor

    def read(self, offset: int, size: int) -> bytes:
        if self.backend._is_upper(self.ino):
            self.backend._flush_ino(self.ino)
            return self.backend._read(self.ino, offset, size)
        return read_at(self.descriptor, offset, size)

    def write(self, offset: int, data: bytes) -> int:
        raise OSError(errno.EBADF, "file is open read-only", f"inode {self.ino}")

    def truncate(self, size: int) -> None:
        raise OSError(errno.EBADF, "file is open read-only", f"inode {self.ino}")

    def flush(self) -> None:
        pass

    def getattr(self) -> Attr:
        return self.backend.getattr(self.ino)

    def close(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1
