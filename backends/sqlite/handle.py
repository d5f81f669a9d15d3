"""Open files of sqlite mode: a write buffer per chunk, merged on flush."""

from __future__ import annotations

import errno
import time

from vfs.backends.base import Attr, Backend, Handle
from vfs.backends.sqlite.tables import MAX_FILE_SIZE, FileTables

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

    ``backend`` is the workspace the file was opened in (its attributes are
    what :meth:`getattr` reports); ``tables`` hold the file's rows.
    """

    def __init__(
        self,
        backend: Backend,
        tables: FileTables,
        ino: int,
        *,
        append: bool = False,
        new: bool = False,
    ) -> None:
        self.backend = backend
        self.tables = tables
        self.ino = ino
        self.append = append
        self.dirty: dict[int, bytearray] = {}
        self.spans: dict[int, list[list[int]]] = {}
        self.end = 0  # largest end offset among buffered writes
        self.written_ns = 0  # when the last buffered write happened
        self.closed = False
        # Tells other processes it is open; refused while a transaction frees it.
        tables.open_files.register(self)
        # Held now, so it can no longer be freed; but a free that committed
        # between the caller's lookup and the hold has already happened
        # (not for an inode this transaction has just made: ``new``).
        if not new and not tables.exists(ino):
            self.close()
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")

    def _size(self) -> int:
        return max(self.tables.size(self.ino), self.end)

    def read(self, offset: int, size: int) -> bytes:
        self.tables.open_files.flush(self.ino)
        return self.tables.read(self.ino, offset, size)

    def write(self, offset: int, data: bytes) -> int:
        self.tables.check_writable()
        if self.append:
            # The end includes what other open handles have buffered.
            offset = max(self.backend.getattr(self.ino).size, self.end)
        if offset + len(data) > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "File too large", f"inode {self.ino}")
        cs = self.tables.chunk_size
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
        cs = self.tables.chunk_size
        if len(spans) == 1 and spans[0] == [0, cs]:
            return bytes(buf)
        current = bytearray(self.tables.chunk(self.ino, idx))
        for start, stop in spans:
            if len(current) < stop:
                current.extend(bytes(stop - len(current)))
            current[start:stop] = buf[start:stop]
        return bytes(current)

    def flush(self) -> None:
        if not self.dirty and not self.end:
            return
        tables = self.tables
        with tables.db.write():
            # The size first: whether a chunk goes to the blob store depends on it.
            tables.set_size(self.ino, self._size(), time.time_ns())
            tables.store_chunks(self.ino, {idx: self._merged(idx) for idx in sorted(self.dirty)})
        self.dirty.clear()
        self.spans.clear()
        self.end = 0

    def truncate(self, size: int) -> None:
        self.tables.check_writable()
        self.tables.open_files.flush(self.ino)
        with self.tables.db.write():
            old = self._size()
            self.tables.truncate(self.ino, old, size, time.time_ns())

    def getattr(self) -> Attr:
        return self.backend.getattr(self.ino)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            tables = self.tables
            last = tables.open_files.unregister(self)
            # Only a nameless inode needs freeing; the common close takes no write lock.
            if last and tables.nlink(self.ino) == 0:
                with tables.db.write():
                    tables.forget_orphan(self.ino)
                    tables.release_if_unused(self.ino)
