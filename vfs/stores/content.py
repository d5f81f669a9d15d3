"""Chunked content for the stores: the same layout and chunk store as files.

A store's content table has rows ``(owner, idx, chunk)``; chunk ``idx`` covers
bytes ``[idx * chunk_size, (idx + 1) * chunk_size)`` with trailing zeros
trimmed, exactly like ``file_chunks``, so a file's chunk ids can be shared as
they are and equal content is stored once.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from vfs.backends.chunks import (
    CONTENT_COLUMNS,
    DEFAULT_CHUNK_SIZE,
    ChunkStore,
    chunk_hash,
    content_checksum,
)
from vfs.backends.db import Database

_CONTENT = ", ".join("c." + column for column in CONTENT_COLUMNS.split(", "))

Content = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


def blocks(source: Content, size: int) -> Iterator[bytes]:
    """``source`` (bytes, a binary stream or an iterable of bytes) in blocks of ``size``."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), size):
            yield data[start : start + size]
        return
    pieces: Iterable[bytes]
    if hasattr(source, "read"):
        stream: BinaryIO = source  # type: ignore[assignment]
        # Reads may come back short (pipes, sockets); the layout needs whole chunks.
        pieces = iter(lambda: stream.read(size), b"")
    else:
        pieces = source  # type: ignore[assignment]
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


class ChunkedContent:
    """Write and read content kept as chunk rows of one table.

    ``table`` and ``owner`` are identifiers from this package, never user input.
    """

    def __init__(self, db: Database, table: str, owner: str) -> None:
        self.db = db
        self.chunks = ChunkStore(db)
        self.table = table
        self.owner = owner

    def write(
        self, owner_id: int, source: Content, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> tuple[int, str]:
        """Store ``source`` for ``owner_id``; returns ``(size, digest)``.

        The digest is ``content_checksum``'s, so content equal to a file's has
        the file's checksum. Call inside a write transaction.
        """
        size = 0
        hashes: list[tuple[int, bytes]] = []
        for idx, block in enumerate(blocks(source, chunk_size)):
            size += len(block)
            trimmed = block.rstrip(b"\0")
            if trimmed:
                self.add(owner_id, idx, self.chunks.put(trimmed))
                hashes.append((idx, chunk_hash(trimmed)))
        return size, content_checksum(size, hashes)

    def add(self, owner_id: int, idx: int, chunk: int) -> None:
        """Reference stored chunk ``chunk`` as chunk ``idx`` of ``owner_id``'s content."""
        self.db.execute(
            f"INSERT INTO {self.table} ({self.owner}, idx, chunk) VALUES (?, ?, ?)",
            (owner_id, idx, chunk),
        )

    def read(self, owner_id: int, size: int, chunk_size: int, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of content ``size`` long."""
        end = min(size, offset + length)
        if offset >= end:
            return b""
        rows = self.db.query(
            f"SELECT t.idx, {_CONTENT} FROM {self.table} t JOIN chunks c ON c.id = t.chunk"
            f" WHERE t.{self.owner} = ? AND t.idx BETWEEN ? AND ?",
            (owner_id, offset // chunk_size, (end - 1) // chunk_size),
        )
        out = bytearray(end - offset)
        for row in rows:
            idx, data = row[0], self.chunks.content(row[1:], f"{self.table} {owner_id}")
            base = idx * chunk_size
            lo = max(offset, base)
            hi = min(end, base + len(data))
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - base : hi - base]
        return bytes(out)

    def iter(self, owner_id: int, size: int, chunk_size: int) -> Iterator[bytes]:
        """The whole content, one chunk at a time."""
        for offset in range(0, size, chunk_size):
            yield self.read(owner_id, size, chunk_size, offset, chunk_size)


class ContentReader(io.RawIOBase):
    """A read-only, seekable binary stream over stored content."""

    def __init__(self, content: ChunkedContent, owner_id: int, size: int, chunk_size: int) -> None:
        super().__init__()
        self._content = content
        self._owner_id = owner_id
        self._size = size
        self._chunk_size = chunk_size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._content.read(
            self._owner_id, self._size, self._chunk_size, self._pos, len(buffer)
        )
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._content.read(
            self._owner_id, self._size, self._chunk_size, self._pos, self._size
        )
        self._pos += len(data)
        return data
