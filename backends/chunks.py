"""The content-addressed chunk store shared by files, artifacts and the overlay.

Chunks are keyed by xxh3-128 but a hash match alone never shares a chunk: the
bytes are compared too (in SQL, without copying them out), so a collision makes
a second row rather than corrupting a file. Rows that reference a chunk keep
its ``refs`` count through triggers declared next to each referencing table.
"""

from __future__ import annotations

import errno

import xxhash

from vfs.backends.db import Database

DEFAULT_CHUNK_SIZE = 64 * 1024


def chunk_hash(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


def verified(data: bytes, digest: bytes, where: str) -> bytes:
    """``data`` if it still hashes to the ``digest`` stored with it, else EIO.

    A damaged page (bit rot, a stray write to the file) passes SQLite's own
    checks; without this a read would return the wrong bytes and succeed.
    xxh3 hashes at memory speed, so every read can afford it.
    """
    if xxhash.xxh3_128_digest(data) != digest:
        raise OSError(errno.EIO, "stored content is corrupt (chunk hash mismatch)", where)
    return data


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
        row = self.db.one("SELECT data, hash FROM chunks WHERE id = ?", (chunk_id,))
        if row is None:
            raise FileNotFoundError(f"chunk {chunk_id} is missing")
        return verified(bytes(row[0]), row[1], f"chunk {chunk_id}")

    def collect_garbage(self) -> int:
        """Delete chunks nothing references; returns how many."""
        with self.db.write():
            self.db.execute("DELETE FROM chunks WHERE refs <= 0")
            return int(self.db.conn.changes())
