"""The content-addressed chunk store shared by files, artifacts and the overlay.

Chunks are keyed by xxh3-128 but a hash match alone never shares a chunk: the
bytes are compared too (in SQL, without copying them out), so a collision makes
a second row rather than corrupting a file. Rows that reference a chunk keep
its ``refs`` count through triggers declared next to each referencing table.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import xxhash

from vfs.backends.db import Database

DEFAULT_CHUNK_SIZE = 64 * 1024


def chunk_hash(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


class ChunkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, data: bytes) -> int:
        """The id of a chunk holding ``data``, stored if no identical chunk exists.

        Call inside a write transaction, and reference the id in the same one:
        an unreferenced chunk is garbage.
        """
        digest = chunk_hash(data)
        found = self.db.value(
            "SELECT id FROM chunks WHERE hash = ? AND size = ? AND data = ? LIMIT 1",
            (digest, len(data), data),
        )
        if found is not None:
            return int(found)
        self.db.execute(
            "INSERT INTO chunks (hash, size, refs, data) VALUES (?, ?, 0, ?)",
            (digest, len(data), data),
        )
        return int(self.db.conn.last_insert_rowid())

    def get(self, chunk_id: int) -> bytes:
        data = self.db.value("SELECT data FROM chunks WHERE id = ?", (chunk_id,))
        if data is None:
            raise FileNotFoundError(f"chunk {chunk_id} is missing")
        return bytes(data)

    def collect_garbage(self) -> int:
        """Delete chunks nothing references; returns how many."""
        with self.db.write():
            self.db.execute("DELETE FROM chunks WHERE refs <= 0")
            return int(self.db.conn.changes())

    # -- whole-store access, for backups and checks ---------------------------

    def rows(self) -> Iterator[tuple[int, bytes, int]]:
        """``(id, hash, size)`` of every chunk, without their bytes."""
        for chunk_id, digest, size in self.db.query("SELECT id, hash, size FROM chunks"):
            yield int(chunk_id), bytes(digest), int(size)

    def drop_bytes(self) -> None:
        """Empty every chunk's bytes, keeping ids, hashes and sizes.

        Only for a private copy of a database (a backup snapshot, whose bytes
        are stored elsewhere): the files of the copy read wrong until
        :meth:`fill` puts the bytes back.
        """
        with self.db.write():
            self.db.execute("UPDATE chunks SET data = x''")

    def fill(self, chunk_id: int, data: bytes) -> None:
        """Put back the bytes of chunk ``chunk_id`` in a copy made by :meth:`drop_bytes`;
        ``OSError(EIO)`` if they are not the bytes the chunk's hash and size name."""
        row = self.db.one("SELECT hash, size FROM chunks WHERE id = ?", (chunk_id,))
        if row is None:
            raise FileNotFoundError(errno.ENOENT, "no such chunk", str(chunk_id))
        if len(data) != row[1] or chunk_hash(data) != bytes(row[0]):
            raise OSError(errno.EIO, "chunk bytes do not match their hash", str(chunk_id))
        self.db.execute("UPDATE chunks SET data = ? WHERE id = ?", (data, chunk_id))
