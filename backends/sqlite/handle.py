"""Open files of sqlite mode: a write buffer per chunk, merged on flush."""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING

from vfs.backends.base import Attr, Handle

if TYPE_CHECKING:
    from vfs.backends.sqlite.backend import SqliteBackend

# The largest file, as on ext4 with 4 KiB blocks: offsets past it are EFBIG.
MAX_FILE_SIZE = (16 << 40) - 4096
# Buffered writes per open file are flushed past this many bytes.
DIRTY_LIMIT = 4 * 1024 * 1024


class SqliteHandle(Handle):
    """An open file with a write buffer per chunk.

    Writes collect in ``dirty`` (chunk index -> a chunk-sized buffer holding
    the written bytes) and ``spans`` (which byte ranges of it were written).
    On flush, close, fsync, or past :data:`DIRTY_LIMIT`, each chunk is re-read
    inside the write transaction and only the written spans are applied, so
    two handles writing different bytes of one chunk keep both writes. Reads
    of the same inode in this process flush first.
    """

    def __init__(self, backend: SqliteBackend, ino: int, *, append: bool = False) -> None:
        self.backend = backend
        self.ino = ino
        self.append = append
        self.dirty: dict[int, bytearray] = {}
        self.spans: dict[int, list[list[int]]] = {}
        self.end = 0  # largest end offset among buffered writes
        self.written_ns = 0  # when the last buffered write happened
        self.closed = False
        with backend._lock:
            handles = backend._handles.setdefault(ino, [])
            if not handles:
                backend.inode_locks.hold(ino)  # tells other processes it is open
            handles.append(self)

    def _size(self) -> int:
        size = self.backend.db.value("SELECT size FROM inodes WHERE ino = ?", (self.ino,))
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {self.ino}")
        return max(int(size), self.end)

    def read(self, offset: int, size: int) -> bytes:
        self.backend._flush_ino(self.ino)
        return self.backend._read(self.ino, offset, size)

    def write(self, offset: int, data: bytes) -> int:
        self.backend._writable()
        if self.append:
            # The end includes what other open handles have buffered.
            offset = max(self.backend.getattr(self.ino).size, self.end)
        if offset + len(data) > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "File too large", f"inode {self.ino}")
        cs = self.backend.chunk_size
        view = memoryview(data)
        position, written = offset, 0
        while written < len(data):
            idx, start = divmod(position, cs)
            take = min(cs - start, len(data) - written)
            buf = self.dirty.get(idx)
            if buf is None:
                buf = self.dirty[idx] = bytearray(cs)
                self.spans[idx] = []
            buf[start : start + take] = view[written : written + take]
            spans = self.spans[idx]
            if spans and spans[-1][0] <= start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], start + take)  # the common sequential case
            else:
                spans.append([start, start + take])
            position += take
            written += take
        self.end = max(self.end, offset + len(data))
        self.written_ns = time.time_ns()
        if len(self.dirty) * cs >= DIRTY_LIMIT:
            self.flush()
        return len(data)

    def _merged(self, idx: int) -> bytes:
        """Chunk ``idx`` as stored now, with this handle's written spans applied."""
        buf, spans = self.dirty[idx], self.spans[idx]
        cs = self.backend.chunk_size
        if len(spans) == 1 and spans[0] == [0, cs]:
            return bytes(buf)
        current = bytearray(self.backend._chunk(self.ino, idx))
        for start, stop in spans:
            if len(current) < stop:
                current.extend(bytes(stop - len(current)))
            current[start:stop] = buf[start:stop]
        return bytes(current)

    def flush(self) -> None:
        if not self.dirty and not self.end:
            return
        backend = self.backend
        with backend.db.write():
            size = self._size()
            for idx in sorted(self.dirty):
                backend._store_chunk(self.ino, idx, self._merged(idx))
            now = time.time_ns()
            backend.db.execute(
                "UPDATE inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
                (size, now, now, self.ino),
            )
        self.dirty.clear()
        self.spans.clear()
        self.end = 0

    def truncate(self, size: int) -> None:
        self.backend._writable()
        self.backend._flush_ino(self.ino)
        with self.backend.db.write():
            old = self._size()
            self.backend._truncate(self.ino, old, size, time.time_ns())

    def getattr(self) -> Attr:
        return self.backend.getattr(self.ino)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            backend = self.backend
            with backend._lock:
                handles = backend._handles.get(self.ino, [])
                if self in handles:
                    handles.remove(self)
                if not handles:
                    backend._handles.pop(self.ino, None)
                    backend.inode_locks.release(self.ino)
                last = not handles
            # Only a nameless inode needs freeing; the common close takes no write lock.
            if (
                last
                and backend.db.value("SELECT nlink FROM inodes WHERE ino = ?", (self.ino,)) == 0
            ):
                with backend.db.write():
                    backend.db.execute("DELETE FROM orphans WHERE ino = ?", (self.ino,))
                    backend._release_if_unused(self.ino)
