"""The content-addressed chunk store shared by files, artifacts and the overlay.

Chunks are keyed by xxh3-128 but a hash match alone never shares a chunk: the
bytes are compared too (in SQL, without copying them out), so a collision makes
a second row rather than corrupting a file. Rows that reference a chunk keep
its ``refs`` count through triggers declared next to each referencing table.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from vfs.backends.db import Database

DEFAULT_CHUNK_SIZE = 64 * 1024

# Checkpoints name chunks without counting in chunks.refs (see
# schema/agent/0006_checkpoints.sql): a chunk at refs 0 that one uses is alive.
UNCOUNTED_TABLES = ("checkpoint_file_chunks",)
#: the ``chunks`` columns :meth:`ChunkStore.content` reads a chunk's bytes from
CONTENT_COLUMNS = "data, hash, blob, blob_at, size"
NOT_IN_CHECKPOINT = "NOT EXISTS (SELECT 1 FROM checkpoint_file_chunks WHERE chunk = chunks.id)"


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


def content_checksum(size: int, chunks: Iterable[tuple[int, bytes]]) -> str:
    """The checksum of content ``size`` bytes long from its ``(idx, chunk_hash)`` pairs.

    Pass the stored chunks in ``idx`` order: chunk ``idx`` covers bytes
    ``[idx * chunk_size, (idx + 1) * chunk_size)`` with trailing zeros trimmed,
    and a chunk that is all zeros is left out. Equal content in the same chunk
    size gives an equal checksum, whether it is a file, an artifact output or
    computed from the bytes, so comparing one needs no content read.
    """
    digest = xxhash.xxh3_128()
    digest.update(f"{size}:".encode())
    for idx, hashed in chunks:
        digest.update(idx.to_bytes(8, "little") + bytes(hashed))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One stored chunk of some content: its index, its id in ``chunks`` and its hash."""

    idx: int
    chunk: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class SharedChunks:
    """A file's content as chunk rows another table of the same database can share.

    ``chunks`` are in index order; chunk ``idx`` covers bytes ``[idx *
    chunk_size, (idx + 1) * chunk_size)`` of content ``size`` bytes long.
    """

    size: int
    chunk_size: int
    chunks: list[ChunkRef]

    @property
    def checksum(self) -> str:
        return content_checksum(self.size, ((c.idx, c.hash) for c in self.chunks))


class ChunkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, data: bytes, *, spill: bool = False) -> int:
        """The id of a chunk holding ``data``, stored if no identical chunk exists.

        With ``spill`` and a blob store, the bytes go to the store (written
        before this returns, so before the caller commits) and the row names
        the blob. Call inside a write transaction, and reference the id in the
        same one: an unreferenced chunk is garbage.
        """
        if spill and self.db.blobs is not None and data:
            return self.put_blob([data])[0]
        digest = chunk_hash(data)
        found = self.db.value(
            "SELECT id FROM chunks WHERE hash = ? AND size = ? AND data = ? AND blob IS NULL"
            " LIMIT 1",
            (digest, len(data), data),
        )
        if found is not None:
            return int(found)
        self.db.execute(
            "INSERT INTO chunks (hash, size, refs, data) VALUES (?, ?, 0, ?)",
            (digest, len(data), data),
        )
        return int(self.db.conn.last_insert_rowid())

    def put_blob(self, pieces: list[bytes]) -> list[int]:
        """Chunk ids for ``pieces`` (non-empty), kept together in one blob.

        The blob is in the store when this returns: the caller's transaction,
        which references the ids, commits after it. Equal pieces at the same
        place of an equal blob (the same write again) share rows.
        """
        blobs = self.db.blobs
        if blobs is None:
            raise ValueError("no blob store")
        key = blobs.put(b"".join(pieces))
        ids, offset = [], 0
        for data in pieces:
            found = self.db.value(
                "SELECT id FROM chunks WHERE blob = ? AND blob_at = ? AND size = ? LIMIT 1",
                (key, offset, len(data)),
            )
            if found is None:
                self.db.execute(
                    "INSERT INTO chunks (hash, size, refs, data, blob, blob_at)"
                    " VALUES (?, ?, 0, x'', ?, ?)",
                    (chunk_hash(data), len(data), key, offset),
                )
                found = self.db.conn.last_insert_rowid()
            ids.append(int(found))
            offset += len(data)
        return ids

    def content(self, row: Sequence[Any], where: str) -> bytes:
        """The bytes of a chunk row's :data:`CONTENT_COLUMNS`, checked against its
        hash; ``OSError(EIO)`` naming ``where`` when damaged or the blob is missing."""
        data, digest, blob, blob_at, size = row
        if blob is None:
            return verified(bytes(data), digest, where)
        if self.db.blobs is None:
            raise OSError(errno.EIO, f"stored content is in blob {blob}, but no blob store", where)
        return self.db.blobs.get(blob, blob_at, size, digest, where)

    def get(self, chunk_id: int) -> bytes:
        row = self.db.one(f"SELECT {CONTENT_COLUMNS} FROM chunks WHERE id = ?", (chunk_id,))
        if row is None:
            raise FileNotFoundError(f"chunk {chunk_id} is missing")
        return self.content(row, f"chunk {chunk_id}")

    def blob_keys(self) -> set[str]:
        """The blobs this database names (live files, checkpoints, stores alike)."""
        return {
            str(r[0])
            for r in self.db.query("SELECT DISTINCT blob FROM chunks WHERE blob IS NOT NULL")
        }

    def blob_holders(self) -> list[tuple[int, str]]:
        """``(chunk id, blob key)`` of every chunk kept in the blob store."""
        return [
            (int(r[0]), str(r[1]))
            for r in self.db.query("SELECT id, blob FROM chunks WHERE blob IS NOT NULL")
        ]

    def collect_garbage(self) -> int:
        """Delete chunks nothing references; returns how many."""
        with self.db.write():
            self.db.execute(f"DELETE FROM chunks WHERE refs <= 0 AND {NOT_IN_CHECKPOINT}")
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

    def fill(self, chunks: list[tuple[int, bytes]]) -> None:
        """Put back the bytes of each ``(chunk id, bytes)`` in a copy made by
        :meth:`drop_bytes`; ``OSError(EIO)`` if they are not the bytes the chunk's
        hash and size name. Chunks that were in a blob store go to this database's
        store, packed into one new blob (or, without a store, into their rows)."""
        blobs = self.db.blobs
        spilled = []
        for chunk_id, data in chunks:
            row = self.db.one("SELECT hash, size, blob FROM chunks WHERE id = ?", (chunk_id,))
            if row is None:
                raise FileNotFoundError(errno.ENOENT, "no such chunk", str(chunk_id))
            if len(data) != row[1] or chunk_hash(data) != bytes(row[0]):
                raise OSError(errno.EIO, "chunk bytes do not match their hash", str(chunk_id))
            if row[2] is not None and blobs is not None:
                spilled.append((chunk_id, data))
            else:
                self.db.execute(
                    "UPDATE chunks SET data = ?, blob = NULL, blob_at = 0 WHERE id = ?",
                    (data, chunk_id),
                )
        if spilled and blobs is not None:
            key = blobs.put(b"".join(data for _, data in spilled))
            offset = 0
            for chunk_id, data in spilled:
                self.db.execute(
                    "UPDATE chunks SET blob = ?, blob_at = ? WHERE id = ?", (key, offset, chunk_id)
                )
                offset += len(data)

    # -- checks, for ``vfs doctor`` -------------------------------------------

    def referencing_columns(self) -> list[tuple[str, str]]:
        """Every ``(table, column)`` with a foreign key to ``chunks``: found in the
        schema, so a table added later is counted without being listed here."""
        found = []
        for (table,) in self.db.query(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ):
            for row in self.db.query("SELECT * FROM pragma_foreign_key_list(?)", (table,)):
                if row[2] == "chunks":
                    found.append((str(table), str(row[3])))
        return sorted(found)

    def _counted_refs(self) -> str:
        counts = " UNION ALL ".join(
            f"SELECT {column} AS chunk FROM {table}"
            for table, column in self.referencing_columns()
            if table not in UNCOUNTED_TABLES
        )
        return f"SELECT chunk, count(*) AS n FROM ({counts}) GROUP BY chunk"

    def damaged(self) -> Iterator[int]:
        """Ids of chunks whose bytes no longer match their hash or size (bit rot);
        chunks kept in the blob store are checked by their own checks."""
        for chunk_id, digest, size, data in self.db.query(
            "SELECT id, hash, size, data FROM chunks WHERE blob IS NULL"
        ):
            if len(data) != size or chunk_hash(bytes(data)) != bytes(digest):
                yield int(chunk_id)

    def wrong_refs(self) -> list[tuple[int, int, int]]:
        """``(chunk, stored refs, real refs)`` where the count is wrong; real 0 is
        garbage unless a checkpoint uses the chunk."""
        return [
            (int(r[0]), int(r[1]), int(r[2]))
            for r in self.db.query(
                f"SELECT c.id, c.refs, coalesce(r.n, 0) FROM chunks c"
                f" LEFT JOIN ({self._counted_refs()}) r ON r.chunk = c.id"
                " WHERE c.refs IS NOT coalesce(r.n, 0)"
            )
        ]

    def missing(self) -> list[tuple[str, int]]:
        """``(table, chunk id)`` of references to chunks that do not exist."""
        found = []
        for table, column in self.referencing_columns():
            found += [
                (table, int(r[0]))
                for r in self.db.query(
                    f"SELECT DISTINCT {column} FROM {table}"
                    f" WHERE {column} NOT IN (SELECT id FROM chunks)"
                )
            ]
        return found

    def fix_refs(self) -> int:
        """Set every reference count to the real one and free unreferenced chunks."""
        with self.db.write():
            wrong = self.wrong_refs()
            for chunk_id, _stored, real in wrong:
                if real:
                    self.db.execute("UPDATE chunks SET refs = ? WHERE id = ?", (real, chunk_id))
                else:
                    self.db.execute(
                        f"DELETE FROM chunks WHERE id = ? AND {NOT_IN_CHECKPOINT}", (chunk_id,)
                    )
                    self.db.execute("UPDATE chunks SET refs = 0 WHERE id = ?", (chunk_id,))
            return len(wrong)
