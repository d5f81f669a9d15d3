"""The file tables of an agent database: inodes, directory entries and file chunks.

Both database engines keep their files here: sqlite mode is these tables and
nothing else; hybrid mode keeps its upper layer in them (see
``vfs.backends.hybrid.upper``). :class:`FileTables` is the one place that
knows their rows: the row operations every file operation is built from, and
file content as chunk rows.

Chunk ``idx`` of a file covers bytes ``[idx * chunk_size, (idx + 1) *
chunk_size)``; its stored bytes have trailing zeros trimmed, so a missing or
short chunk reads as zeros (sparse files cost nothing) and equal content
always has equal chunks.

Call the row operations inside a write transaction of :attr:`FileTables.db`
(``with tables.db.write():``); they do not open one themselves.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from vfs.backends.base import ROOT_INO, Attr
from vfs.backends.chunks import (
    CONTENT_COLUMNS,
    DEFAULT_CHUNK_SIZE,
    ChunkRef,
    ChunkStore,
    content_checksum,
)
from vfs.backends.db import Database
from vfs.backends.names import split_path
from vfs.backends.sqlite.inode_locks import InodeLocks
from vfs.backends.sqlite.open_files import OpenFiles

#: the ``inodes`` columns that make an :class:`Attr`, in its field order
INODE_COLUMNS = "ino, mode, nlink, uid, gid, size, atime_ns, mtime_ns, ctime_ns, btime_ns, rdev"
# Inode numbers the counter hands out stay below this; the hybrid overlay and
# the reserved /.vfs tree number their inodes above it.
NUMBERED_INO_LIMIT = 1 << 61
# The largest file, as on ext4 with 4 KiB blocks: offsets past it are EFBIG.
MAX_FILE_SIZE = (16 << 40) - 4096
_FAST_DEPTH = 24  # deeper paths resolve name by name
_CONTENT = CONTENT_COLUMNS.split(", ")
BLOB_CHUNKS = 64  # chunks packed into one blob at most: 4 MiB of 64 KiB chunks
_CONTENT_OF_CHUNK = ", ".join(f"(SELECT {c} FROM chunks WHERE id = chunk)" for c in _CONTENT)


class Slot(NamedTuple):
    """A name in a live directory, found in one statement: the directory and what
    the name holds now (``child`` None when it is free)."""

    parent: int
    child: int | None
    child_mode: int | None


def attr_of(row: Any) -> Attr:
    """An :class:`Attr` from the :data:`INODE_COLUMNS` of a row."""
    return Attr(*row)


# Hot-path path walks nest a subquery per name rather than join ``entries`` with
# itself: this SQLite build planned those joins again on every run with new
# parameters, which cost several times the query. (Joining one inode's first
# chunk, in the small-file read, measured faster than a subquery per column.)


class FileTables:
    """The inode, entry and chunk rows of one agent database, and its open files.

    A layer whose files keep bytes elsewhere overrides :meth:`read`,
    :meth:`chunk`, :meth:`store_chunk`, :meth:`truncate` and :meth:`touch_dir`
    (hybrid's ``OverlayTables`` does); the handles and the sqlite engine reach
    content through those only.

    Parameters
    ----------
    db:
        The agent database; the root directory and the chunk size are set up
        on first use.
    read_only:
        Whether changes are refused (:meth:`check_writable`).
    """

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only
        self.chunks = ChunkStore(db)
        #: the files this process has open, and which inodes any process has open
        self.open_files = OpenFiles(InodeLocks(db.path.with_name(db.path.name + ".locks")))
        self.inode_locks = self.open_files.locks
        self.chunk_size = self._setup()

    def _setup(self) -> int:
        settings = dict(
            self.db.query("SELECT key, value FROM meta WHERE key IN ('chunk_size', 'next_ino')")
        )
        has_root = self.db.value("SELECT 1 FROM inodes WHERE ino = ?", (ROOT_INO,))
        if len(settings) == 2 and has_root:
            return int(settings["chunk_size"])
        with self.db.write():
            now = time.time_ns()
            self.db.execute(
                "INSERT OR IGNORE INTO inodes (ino, mode, nlink, uid, gid, atime_ns, mtime_ns,"
                " ctime_ns, btime_ns) VALUES (?, ?, 2, ?, ?, ?, ?, ?, ?)",
                (ROOT_INO, stat.S_IFDIR | 0o755, os.getuid(), os.getgid(), now, now, now, now),
            )
            # The chunk size is fixed when a database is created; the
            # environment variable exists for benchmarking other sizes.
            chunk_size = int(os.environ.get("AGENT_VFS_CHUNK_SIZE", DEFAULT_CHUNK_SIZE))
            if not 4096 <= chunk_size <= 16 << 20:
                raise ValueError(f"chunk size {chunk_size} is outside 4 KiB..16 MiB")
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('chunk_size', ?)",
                (str(chunk_size),),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_ino',"
                " (SELECT coalesce(max(ino), 1) FROM inodes WHERE ino < ?))",
                (NUMBERED_INO_LIMIT,),
            )
            return int(self.db.value("SELECT value FROM meta WHERE key = 'chunk_size'"))

    def check_writable(self) -> None:
        """Raise ``OSError(EROFS)`` when the tables were opened read-only."""
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system")

    # -- inodes and entries --------------------------------------------------

    def get(self, ino: int) -> Attr:
        """The stored attributes of ``ino``; ``FileNotFoundError`` if there is no row."""
        row = self.db.one(f"SELECT {INODE_COLUMNS} FROM inodes WHERE ino = ?", (ino,))
        if row is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return attr_of(row)

    def exists(self, ino: int) -> bool:
        return self.db.value("SELECT 1 FROM inodes WHERE ino = ?", (ino,)) is not None

    def directory(self, ino: int) -> Attr:
        """The attributes of directory ``ino``; ``NotADirectoryError`` if it is not one,
        ``FileNotFoundError`` if it is gone or was removed."""
        attr = self.get(ino)
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {ino}")
        if attr.nlink == 0:
            raise FileNotFoundError(errno.ENOENT, "directory was removed", f"inode {ino}")
        return attr

    def entry(self, parent: int, name: str) -> Attr | None:
        """What ``name`` in directory ``parent`` names, or None."""
        # A subquery rather than a join: SQLite runs this form several times faster.
        row = self.db.one(
            f"SELECT {INODE_COLUMNS} FROM inodes"
            " WHERE ino = (SELECT ino FROM entries WHERE parent = ? AND name = ?)",
            (parent, name),
        )
        return None if row is None else attr_of(row)

    def entries(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        """The entries of directory ``ino`` after entry id ``offset``, in id order,
        as ``(name, attr, id)``; ids never change, so offsets are stable."""
        columns = ", ".join("i." + c for c in INODE_COLUMNS.split(", "))
        while True:
            rows = self.db.query(
                f"SELECT e.id, e.name, {columns} FROM entries e JOIN inodes i ON i.ino = e.ino"
                " WHERE e.parent = ? AND e.id > ? ORDER BY e.id LIMIT 512",
                (ino, offset),
            )
            for row in rows:
                offset = row[0]
                yield row[1], attr_of(row[2:]), offset
            if len(rows) < 512:
                return

    def touch_dir(self, ino: int, now: int, nlink_delta: int = 0) -> None:
        """Directory ``ino`` changed at ``now``; ``nlink_delta`` subdirectories came or went."""
        self.db.execute(
            "UPDATE inodes SET mtime_ns = ?, ctime_ns = ?, nlink = nlink + ? WHERE ino = ?",
            (now, now, nlink_delta, ino),
        )

    def new_inode(
        self,
        mode: int,
        nlink: int,
        uid: int,
        gid: int,
        size: int = 0,
        target: bytes | None = None,
        now: int | None = None,
        rdev: int = 0,
    ) -> int:
        """A new inode row; its number was never used before."""
        # Numbers come from a counter and are never reused: a handle another
        # process still holds on a freed inode must not reach a new file.
        ino = int(
            self.db.value(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_ino'"
                " RETURNING CAST(value AS INTEGER)"
            )
        )
        now = time.time_ns() if now is None else now
        self.db.execute(
            "INSERT INTO inodes (ino, mode, nlink, uid, gid, size, atime_ns, mtime_ns, ctime_ns,"
            " btime_ns, target, rdev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ino, mode, nlink, uid, gid, size, now, now, now, now, target, rdev),
        )
        return ino

    def add_entry(self, parent: int, name: str, ino: int) -> None:
        """Name ``ino`` ``parent/name``; ``FileExistsError`` if the name is taken."""
        if self.entry(parent, name) is not None:
            raise FileExistsError(errno.EEXIST, "File exists", name)
        self.db.execute(
            "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
        )

    def remove_nondir_entry(self, parent: int, name: str) -> int | None:
        """Remove the entry ``parent/name`` unless it names a directory; the inode it
        named, or None when nothing was removed (no such name, or a directory)."""
        value = self.db.value(
            "DELETE FROM entries WHERE parent = ? AND name = ?"
            " AND (SELECT mode FROM inodes WHERE ino = entries.ino) & ? != ? RETURNING ino",
            (parent, name, stat.S_IFMT(0o177777), stat.S_IFDIR),
        )
        return None if value is None else int(value)

    def remove_entry(self, parent: int, name: str) -> None:
        self.db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, name))

    def drop_link(self, ino: int, now: int) -> None:
        """One name of ``ino`` is gone; free it when it has none left and nobody has it open."""
        nlink = self.db.value(
            "UPDATE inodes SET nlink = nlink - 1, ctime_ns = ? WHERE ino = ? RETURNING nlink",
            (now, ino),
        )
        if nlink == 0:
            self._release(ino)

    def release_if_unused(self, ino: int) -> None:
        """Free ``ino`` if it has no name and no process has it open; else, if it has
        no name, record it as an orphan that its last close frees."""
        nlink = self.db.value("SELECT nlink FROM inodes WHERE ino = ?", (ino,))
        if nlink == 0:
            self._release(ino)

    def _release(self, ino: int) -> None:
        """``ino`` has no name left: free it now, or at its last close if it is open."""
        if self._claim(ino):
            self.db.execute("DELETE FROM inodes WHERE ino = ?", (ino,))
        else:
            # Still open here or in another process: its last close frees it.
            self.db.execute(
                "INSERT OR REPLACE INTO orphans (ino, pid) VALUES (?, ?)", (ino, os.getpid())
            )

    def _claim(self, ino: int) -> bool:
        """Whether ``ino`` may be freed in this transaction: nobody has it open,
        and nobody can open it until the transaction has ended."""
        if not self.open_files.claim(ino):
            return False
        self.db.after_transaction(lambda: self.open_files.unclaim(ino))
        return True

    def forget_orphan(self, ino: int) -> None:
        """``ino`` is no longer an orphan waiting for its last close."""
        self.db.execute("DELETE FROM orphans WHERE ino = ?", (ino,))

    def add_orphan(self, ino: int) -> None:
        """``ino`` has no name yet; if this process dies first, it is reclaimed."""
        self.db.execute("INSERT INTO orphans (ino, pid) VALUES (?, ?)", (ino, os.getpid()))

    def remove_dir(self, parent: int, name: str, attr: Attr, now: int) -> None:
        """Remove the entry ``parent/name`` of directory ``attr`` and its inode.

        ``NotADirectoryError`` if it is not a directory, ``OSError(ENOTEMPTY)``
        if it has entries.
        """
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
        if not self.is_empty(attr.ino):
            raise OSError(errno.ENOTEMPTY, "Directory not empty", name)
        self.remove_entry(parent, name)
        self.db.execute("DELETE FROM inodes WHERE ino = ?", (attr.ino,))
        self.touch_dir(parent, now, -1)

    def is_empty(self, ino: int) -> bool:
        """Whether directory ``ino`` has no entries."""
        return not self.db.value("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (ino,))

    def contains(self, ancestor: int, ino: int) -> bool:
        """Whether directory ``ancestor`` is ``ino`` or contains it."""
        while True:
            if ino == ancestor:
                return True
            if ino == ROOT_INO:
                return False
            parent = self.db.value("SELECT parent FROM entries WHERE ino = ? LIMIT 1", (ino,))
            if parent is None:
                return False
            ino = int(parent)

    def move_entry(self, parent: int, name: str, new_parent: int, new_name: str) -> None:
        self.db.execute(
            "UPDATE entries SET parent = ?, name = ? WHERE parent = ? AND name = ?",
            (new_parent, new_name, parent, name),
        )

    def point_entry(self, parent: int, name: str, ino: int) -> None:
        """Make the existing entry ``parent/name`` name ``ino``."""
        self.db.execute(
            "UPDATE entries SET ino = ? WHERE parent = ? AND name = ?", (ino, parent, name)
        )

    def add_link(self, ino: int, now: int) -> None:
        """``ino`` got one more name: count it, and it is no longer an orphan."""
        self.db.execute(
            "UPDATE inodes SET nlink = nlink + 1, ctime_ns = ? WHERE ino = ?", (now, ino)
        )
        self.forget_orphan(ino)

    def set_ctime(self, now: int, *inos: int) -> None:
        for ino in inos:
            self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE ino = ?", (now, ino))

    def size(self, ino: int) -> int:
        """The stored size of ``ino``; ``FileNotFoundError`` if there is no row."""
        size = self.db.value("SELECT size FROM inodes WHERE ino = ?", (ino,))
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return int(size)

    def nlink(self, ino: int) -> int | None:
        value = self.db.value("SELECT nlink FROM inodes WHERE ino = ?", (ino,))
        return None if value is None else int(value)

    def reclaim_orphans(self) -> int:
        """Free nameless inodes that no process has open any more; returns how many."""
        with self.db.write():
            nameless = [r[0] for r in self.db.query("SELECT ino FROM inodes WHERE nlink = 0")]
            dead = [ino for ino in nameless if self._claim(ino)]
            for ino in dead:
                self.db.execute("DELETE FROM inodes WHERE ino = ? AND nlink = 0", (ino,))
            return len(dead)

    # -- paths in one statement --------------------------------------------------

    @staticmethod
    @functools.cache
    def _path_sql(depth: int, with_data: bool) -> str:
        """One statement that walks ``depth`` names from the root, as nested subqueries."""
        ino = str(ROOT_INO)
        for k in range(1, depth + 1):
            ino = f"(SELECT ino FROM entries WHERE parent = {ino} AND name = ?{k})"
        if not with_data:
            return f"SELECT {INODE_COLUMNS} FROM inodes WHERE ino = {ino}"
        # The first chunk's columns by two joins, not a subquery per column (each of
        # which found the chunk again): ~1 µs of a ~12 µs read.
        columns = ", ".join(f"i.{c}" for c in INODE_COLUMNS.split(", "))
        content = ", ".join(f"c.{c}" for c in _CONTENT)
        return (
            f"SELECT {columns}, {content} FROM inodes AS i"
            " LEFT JOIN file_chunks AS f ON f.ino = i.ino AND f.idx = 0"
            f" LEFT JOIN chunks AS c ON c.id = f.chunk WHERE i.ino = {ino}"
        )

    @staticmethod
    @functools.cache
    def _slot_sql(depth: int | None) -> str:
        """One statement for a directory and one name in it: the directory is
        parameter ``?1`` (``depth`` None; the name is ``?2``), or the walk of
        ``depth`` names from the root (the name is ``?{depth + 1}``)."""
        if depth is None:
            ino, name = "?1", "?2"
        else:
            ino, name = str(ROOT_INO), f"?{depth + 1}"
            for k in range(1, depth + 1):
                ino = f"(SELECT ino FROM entries WHERE parent = {ino} AND name = ?{k})"
        child = f"(SELECT ino FROM entries WHERE parent = d.ino AND name = {name})"
        return (
            f"SELECT d.mode, d.nlink, d.ino, {child},"
            f" (SELECT mode FROM inodes AS c WHERE c.ino = {child})"
            f" FROM inodes AS d WHERE d.ino = {ino}"
        )

    def _slot(self, row: Any) -> Slot | None:
        if row is None or not stat.S_ISDIR(row[0]) or row[1] == 0:
            return None
        return Slot(row[2], row[3], row[4])

    def slot(self, parent: int, name: str) -> Slot | None:
        """``name`` in directory ``parent``; None when ``parent`` is not a live
        directory (the caller asks again name by name, to report why)."""
        return self._slot(self.db.one(self._slot_sql(None), (parent, name)))

    def slot_at(self, parts: list[str]) -> Slot | None:
        """The last of ``parts`` (checked names) in the directory the others name from
        the root, found by entry rows alone; None when a name-by-name walk must
        decide (a symlink or a missing name on the way, a path too deep)."""
        if not parts or len(parts) > _FAST_DEPTH:
            return None
        return self._slot(self.db.one(self._slot_sql(len(parts) - 1), parts))

    def _walk(self, path: str, follow: bool, with_data: bool) -> Any:
        parts = split_path(path)
        if not parts or len(parts) > _FAST_DEPTH:
            return None
        row = self.db.one(self._path_sql(len(parts), with_data), parts)
        if row is None or (follow and stat.S_ISLNK(row[1])) or self.open_files.is_open(row[0]):
            return None
        return row

    def walk(self, path: str, *, follow: bool = False) -> Attr | None:
        """The inode at ``path`` found by entry rows alone, in one statement; None when
        a name-by-name walk must decide (a symlink on the way, a missing name, an
        error to report, a file open here whose buffered writes change its size)."""
        row = self._walk(path, follow, with_data=False)
        return None if row is None else attr_of(row)

    def walk_small_file(self, path: str) -> tuple[Attr, bytes] | None:
        """Like :meth:`walk` (following a final symlink) for a regular file of at most
        one chunk: its attributes and content in one statement; else None."""
        row = self._walk(path, True, with_data=True)
        if row is None or not stat.S_ISREG(row[1]) or row[5] > self.chunk_size:
            return None
        attr, stored = attr_of(row[: -len(_CONTENT)]), row[-len(_CONTENT) :]
        data = b"" if stored[1] is None else self.chunks.content(stored, path)
        if len(data) < attr.size:
            data += bytes(attr.size - len(data))  # trailing zeros are not stored
        return attr, data

    def close(self) -> None:
        """Close every file this process has open, then the inode lock file."""
        self.open_files.close()

    # -- content ----------------------------------------------------------------

    def read(self, ino: int, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of ``ino`` as stored (no buffered writes)."""
        if length <= 0:
            return b""
        cs = self.chunk_size
        # One statement returns the size (idx -1) and the chunks in range.
        rows = self.db.query(
            "SELECT -1, size, NULL, NULL, NULL, NULL FROM inodes WHERE ino = ?1 UNION ALL"
            f" SELECT idx, {_CONTENT_OF_CHUNK} FROM file_chunks"
            " WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3",
            (ino, offset // cs, (offset + length - 1) // cs),
        )
        size = next((row[1] for row in rows if row[0] == -1), None)
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        where = f"inode {ino}"
        content = self.chunks.content
        rows = [(row[0], content(row[1:], where)) for row in rows if row[0] != -1]
        return self._assemble(rows, offset, min(size, offset + length))

    def _assemble(self, rows: list[Any], offset: int, end: int) -> bytes:
        """Bytes ``[offset, end)`` from ``(idx, data)`` chunk rows; gaps are zeros."""
        if offset >= end:
            return b""
        cs = self.chunk_size
        pieces: list[bytes | memoryview] = []
        position = offset
        for idx, data in sorted(rows):
            base = idx * cs
            lo, hi = max(position, base), min(end, base + len(data))
            if lo >= hi:
                continue
            if lo > position:
                pieces.append(bytes(lo - position))
            pieces.append(memoryview(data)[lo - base : hi - base])
            position = hi
        if position < end:
            pieces.append(bytes(end - position))
        return b"".join(pieces)

    def chunk(self, ino: int, idx: int) -> bytes:
        """The stored bytes of chunk ``idx`` of ``ino`` (trailing zeros trimmed)."""
        row = self.db.one(
            f"SELECT {CONTENT_COLUMNS} FROM chunks"
            " WHERE id = (SELECT chunk FROM file_chunks WHERE ino = ? AND idx = ?)",
            (ino, idx),
        )
        return b"" if row is None else self.chunks.content(row, f"inode {ino}")

    def store_chunk(self, ino: int, idx: int, data: bytes, *, spill: bool | None = None) -> None:
        """Make chunk ``idx`` of ``ino`` hold ``data`` (at most one chunk)."""
        self.write_chunk(ino, idx, data, keep_empty=False, spill=spill)

    def write_chunk(
        self, ino: int, idx: int, data: bytes, *, keep_empty: bool, spill: bool | None = None
    ) -> None:
        """Store chunk ``idx`` of ``ino``; an all-zero chunk gets a row only with
        ``keep_empty``; ``spill`` says whether it goes to the blob store, if known."""
        data = data.rstrip(b"\0")
        if not data and not keep_empty:
            self.db.execute("DELETE FROM file_chunks WHERE ino = ? AND idx = ?", (ino, idx))
            return
        if spill is None:
            spill = self._spills(ino, idx, data)
        chunk = self.chunks.put(data, spill=spill)
        self.db.execute(
            "INSERT INTO file_chunks (ino, idx, chunk) VALUES (?, ?, ?)"
            " ON CONFLICT (ino, idx) DO UPDATE SET chunk = excluded.chunk",
            (ino, idx, chunk),
        )

    def store_chunks(
        self,
        ino: int,
        chunks: dict[int, bytes],
        *,
        keep_empty: bool | None = None,
        size: int | None = None,
    ) -> None:
        """:meth:`store_chunk` (:meth:`write_chunk` when ``keep_empty`` is given) for
        several chunks of ``ino``; those that go to the blob store are packed a few
        MiB to a blob (one object per chunk would cost a file or a request each).
        ``size``, the file's size if the caller knows it, spares reading it."""
        spilled = {}
        blobs = self.db.blobs
        if size is None and blobs is not None and blobs.threshold:
            size = self.size(ino)  # once for every chunk, not a read per chunk
        for idx, data in chunks.items():
            trimmed = data.rstrip(b"\0")
            if trimmed and self._spills(ino, idx, trimmed, size):
                spilled[idx] = trimmed
            elif keep_empty is None:
                self.store_chunk(ino, idx, data, spill=False)
            else:
                self.write_chunk(ino, idx, data, keep_empty=keep_empty, spill=False)
        order = sorted(spilled)
        for start in range(0, len(order), BLOB_CHUNKS):
            batch = order[start : start + BLOB_CHUNKS]
            ids = self.chunks.put_blob([spilled[idx] for idx in batch])
            self.db.executemany(
                "INSERT INTO file_chunks (ino, idx, chunk) VALUES (?, ?, ?)"
                " ON CONFLICT (ino, idx) DO UPDATE SET chunk = excluded.chunk",
                [(ino, idx, chunk) for idx, chunk in zip(batch, ids, strict=True)],
            )

    def _spills(self, ino: int, idx: int, data: bytes, size: int | None = None) -> bool:
        """Whether this chunk of ``ino`` goes to the blob store: the file, as long as
        ``size`` or its row says (callers record a new size before its chunks) or as
        this chunk makes it, reaches the store's threshold."""
        blobs = self.db.blobs
        if blobs is None or not blobs.threshold:
            return False
        end = idx * self.chunk_size + len(data)
        return blobs.spills(end) or blobs.spills(self.size(ino) if size is None else size)

    def chunk_indexes(self, ino: int) -> set[int]:
        """The indexes of the chunks ``ino`` has rows for."""
        return {r[0] for r in self.db.query("SELECT idx FROM file_chunks WHERE ino = ?", (ino,))}

    def has_chunks(self, ino: int) -> bool:
        return self.db.value("SELECT 1 FROM file_chunks WHERE ino = ? LIMIT 1", (ino,)) is not None

    def chunk_refs(self, ino: int) -> list[ChunkRef]:
        """The stored chunks of ``ino`` in index order (chunks of zeros have none)."""
        return [
            ChunkRef(idx, chunk, bytes(hashed))
            for idx, chunk, hashed in self.db.query(
                "SELECT f.idx, f.chunk, c.hash FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
                " WHERE f.ino = ? ORDER BY f.idx",
                (ino,),
            )
        ]

    def share_chunks(self, ino: int, target: int) -> None:
        """Give ``target`` the chunks of ``ino``: no content bytes are copied."""
        self.db.execute(
            "INSERT INTO file_chunks (ino, idx, chunk) SELECT ?, idx, chunk FROM file_chunks"
            " WHERE ino = ?",
            (target, ino),
        )

    def checksum(self, ino: int) -> str:
        """The content checksum of ``ino`` from its chunk hashes (see ``content_checksum``)."""
        with self.db.read():
            size = self.get(ino).size
            return content_checksum(size, ((c.idx, c.hash) for c in self.chunk_refs(ino)))

    def set_size(self, ino: int, size: int, now: int) -> None:
        """Record a content change of ``ino``: its new size and times."""
        self.db.execute(
            "UPDATE inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
            (size, now, now, ino),
        )

    def truncate(self, ino: int, old_size: int, size: int, now: int) -> None:
        """Cut or extend ``ino`` from ``old_size`` to ``size`` bytes.

        ``OSError(EINVAL)`` for a negative size, ``OSError(EFBIG)`` past
        :data:`MAX_FILE_SIZE`.
        """
        if size < 0:
            raise OSError(errno.EINVAL, "negative size", f"inode {ino}")
        if size > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "File too large", f"inode {ino}")
        cs = self.chunk_size
        if size < old_size:
            keep = (size + cs - 1) // cs  # chunks [0, keep) hold data below size
            self.db.execute("DELETE FROM file_chunks WHERE ino = ? AND idx >= ?", (ino, keep))
            if size % cs:
                last = keep - 1
                self.store_chunk(ino, last, self.chunk(ino, last)[: size % cs])
        self.set_size(ino, size, now)
