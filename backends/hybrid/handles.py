"""Open files of hybrid mode: upper files (sqlite handles that rebase before
their first write) and lower files read straight from the disk."""

from __future__ import annotations

import errno
import os

from vfs.backends.base import Attr, Backend, Handle
from vfs.backends.hybrid.lower import read_at
from vfs.backends.hybrid.upper import OverlayTables
from vfs.backends.sqlite.handle import SqliteHandle


class OverlayHandle(SqliteHandle):
    """An upper file open for writing: the first write takes the lower file as it
    is then as the base, since until then the overlay showed it live."""

    tables: OverlayTables

    def flush(self) -> None:
        if not self.dirty and not self.end:
            return
        with self.tables.db.write():
            self.tables.rebase(self.ino)
            super().flush()


class LowerHandle(Handle):
    """A lower file opened for reading: bytes come straight from the disk file.

    If the file is copied up meanwhile (written through another handle), reads
    follow it into the upper layer.
    """

    def __init__(self, backend: Backend, tables: OverlayTables, ino: int, descriptor: int) -> None:
        self.backend = backend
        self.tables = tables
        self.ino = ino
        self.descriptor = descriptor

    def read(self, offset: int, size: int) -> bytes:
        if self.tables.exists(self.ino):
            self.tables.open_files.flush(self.ino)
            return self.tables.read(self.ino, offset, size)
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
