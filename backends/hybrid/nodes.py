"""What ties hybrid mode's two layers together: inode numbers for lower
objects, where such an object was found, and where an upper file's bytes come
from."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import xxhash

from vfs.backends.base import Attr
from vfs.backends.db import Database
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.sqlite.tables import INODE_COLUMNS

LOWER_INO_BASE = 1 << 61  # below the reserved /.vfs range (1 << 62)
# Lower objects whose natural number is taken, or that live on another device
# than the lower root, are numbered by a hash in this half of the range.
_HASHED = 1 << 60


def lower_ino(st: os.stat_result) -> int:
    """The natural number of a lower object on the lower root's device."""
    return LOWER_INO_BASE | (st.st_ino & (_HASHED - 1))


def hashed_ino(st: os.stat_result, path: str, salt: int = 0) -> int:
    """A number for lower object ``st`` at ``path``, hashed from device, inode and path."""
    key = f"{st.st_dev}:{st.st_ino}:{salt}:{path}".encode(errors="surrogateescape")
    return LOWER_INO_BASE | _HASHED | (xxhash.xxh3_64_intdigest(key) & (_HASHED - 1))


_UPPER_SQL = (
    f"SELECT {INODE_COLUMNS}, (SELECT lower_path FROM overlay_nodes WHERE ino = ?1)"
    " FROM inodes WHERE ino = ?1"
)


class LowerNumbers:
    """Inode numbers for lower objects, stable for as long as the object is."""

    def __init__(self, db: Database, lower: LowerTree) -> None:
        self.db = db
        self.lower = lower
        self.device = os.fstat(lower.root_fd).st_dev
        # Hashed numbers handed out in this process, so an object keeps its
        # number even after its natural number is freed.
        self._hashed: dict[tuple[int, int, str], int] = {}

    def identify(self, st: os.stat_result, path: str) -> tuple[int, Attr | None]:
        """The number of lower object ``st`` at ``path``, and its upper attributes
        when it was copied up under that number.

        A disk file may reuse the inode number of a file the overlay copied up
        and the disk then lost (or moved): an upper inode of the natural number
        is this object only if it was copied from this path, or from another
        name of this same hard-linked file. Anything else gets a hashed number.
        """
        key = (st.st_dev, st.st_ino, path)
        for ino in self._candidates(key, st, path):
            row = self.db.one(_UPPER_SQL, (ino,))
            if row is not None and not self._same_object(row, st, path):
                continue
            if ino != lower_ino(st):
                self._hashed[key] = ino
            return ino, None if row is None else Attr(*row[:-1])
        raise OSError(errno.EOVERFLOW, "no free inode number for a lower object", path)

    def _candidates(
        self, key: tuple[int, int, str], st: os.stat_result, path: str
    ) -> Iterator[int]:
        if key in self._hashed:
            yield self._hashed[key]
        if st.st_dev == self.device:
            yield lower_ino(st)
        for salt in range(8):
            yield hashed_ino(st, path, salt)

    def _same_object(self, row: Any, st: os.stat_result, path: str) -> bool:
        upper, copied_from = Attr(*row[:-1]), row[-1]
        if copied_from is None or upper.nlink == 0:
            return False
        if copied_from == path:
            return True
        if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
            return False
        other = self.lower.lstat_or_none(copied_from)
        return other is not None and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


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
