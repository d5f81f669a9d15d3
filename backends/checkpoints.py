"""Checkpoints: named, read-only copies of an agent's file tables.

A checkpoint copies the rows of ``inodes``, ``entries``, ``file_chunks`` and
``xattrs`` (and, in hybrid mode, the overlay's ``overlay_nodes`` and
``overlay_whiteouts``) into the ``checkpoint_*`` tables of
``schema/agent/0006_checkpoints.sql``, with ``INSERT ... SELECT`` in one
transaction: chunks are shared by reference, so no file byte is copied, and
``chunks.refs`` is left alone (see ``schema/agent/0006_checkpoints.sql``: a
chunk a checkpoint names is kept alive by that row).

A rollback changes only the rows that differ from the checkpoint, in one
transaction: the change journal's triggers record exactly what it changed, so
a mount or a watcher sees a rollback as any other write.

:class:`CheckpointView` is a read-only connection on which the file tables'
names are temporary views of one checkpoint's rows: the sqlite and hybrid
backends run over it unchanged, which is how a checkpoint is read in place.
"""

from __future__ import annotations

import builtins
import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from vfs.backends.base import ROOT_INO
from vfs.backends.chunks import DEFAULT_CHUNK_SIZE, NOT_IN_CHECKPOINT, ChunkStore
from vfs.backends.db import Database

# Checkpoint names appear in paths (/.vfs/checkpoints/NAME) and on command lines.
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_NAME = 64
#: a directory of the tree: opened from its parent's descriptor, never through a symlink
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_INODE_COLUMNS = (
    "ino, mode, uid, gid, size, nlink, rdev, atime_ns, mtime_ns, ctime_ns, btime_ns, target"
)
_NODE_COLUMNS = "ino, lower_path, lower_limit, base_size, base_mtime_ns, base_hash"
_WHITEOUT_COLUMNS = "parent, name, base_size, base_mtime_ns, base_hash"

# (live table, its columns, the columns that identify a row): what a checkpoint copies.
_FILE_TABLES = (
    ("inodes", _INODE_COLUMNS, ("ino",)),
    ("entries", "id, parent, name, ino", ("id",)),
    ("file_chunks", "ino, idx, chunk", ("ino", "idx")),
    ("xattrs", "ino, name, value", ("ino", "name")),
)
_OVERLAY_TABLES = (
    ("overlay_nodes", _NODE_COLUMNS, ("ino",)),
    ("overlay_whiteouts", _WHITEOUT_COLUMNS, ("parent", "name")),
)


def check_checkpoint_name(name: str) -> str:
    """``name`` if it can name a checkpoint, else ``ValueError`` saying why."""
    if not name or len(name) > MAX_NAME or name[0] in ".-" or not set(name) <= NAME_CHARS:
        raise ValueError(
            f"bad checkpoint name {name!r}: use up to {MAX_NAME} letters, digits, '_', '.'"
            " or '-', not starting with '.' or '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """One checkpoint: its name, message, mode, when, and what it holds."""

    id: int
    name: str
    message: str | None
    mode: str
    created_at: float
    files: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "message": self.message,
            "mode": self.mode,
            "created_at": self.created_at,
            "files": self.files,
            "bytes": self.bytes,
        }


class CheckpointTables:
    """The ``checkpoint_*`` tables of one agent database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- catalogue -----------------------------------------------------------

    def _infos(
        self, where: str = "", params: tuple[str, ...] = ()
    ) -> builtins.list[CheckpointInfo]:
        files = f"FROM checkpoint_inodes i WHERE i.checkpoint = c.id AND i.mode & {0o170000} = {stat.S_IFREG}"
        rows = self.db.query(
            "SELECT c.id, c.name, c.message, c.mode, c.created_at,"
            f" (SELECT count(*) {files}), (SELECT coalesce(sum(size), 0) {files})"
            f" FROM checkpoints c {where} ORDER BY c.created_at, c.id",
            params,
        )
        return [CheckpointInfo(*row) for row in rows]

    def list(self) -> builtins.list[CheckpointInfo]:
        return self._infos()

    def names(self) -> builtins.list[tuple[int, str, float, str]]:
        """``(id, name, created_at, mode)`` of every checkpoint, cheaply."""
        return [
            (int(r[0]), str(r[1]), float(r[2]), str(r[3]))
            for r in self.db.query("SELECT id, name, created_at, mode FROM checkpoints ORDER BY id")
        ]

    def get(self, name: str) -> CheckpointInfo:
        found = self._infos("WHERE c.name = ?", (name,))
        if not found:
            raise FileNotFoundError(errno.ENOENT, "no such checkpoint", name)
        return found[0]

    def _new(self, name: str, message: str | None, mode: str) -> int:
        check_checkpoint_name(name)
        if self.db.value("SELECT 1 FROM checkpoints WHERE name = ?", (name,)):
            raise FileExistsError(errno.EEXIST, "checkpoint exists", name)
        self.db.execute(
            "INSERT INTO checkpoints (name, message, mode, created_at) VALUES (?, ?, ?, ?)",
            (name, message, mode, time.time()),
        )
        return int(self.db.conn.last_insert_rowid())

    def delete(self, name: str) -> None:
        with self.db.write():
            cid = self.get(name).id
            used = self.db.query(
                "DELETE FROM checkpoint_file_chunks WHERE checkpoint = ? RETURNING chunk", (cid,)
            )
            # chunks.refs does not count checkpoints: free what no file, store
            # or other checkpoint uses now.
            self.db.executemany(
                f"DELETE FROM chunks WHERE id = ? AND refs <= 0 AND {NOT_IN_CHECKPOINT}",
                sorted(set(used)),
            )
            for table in _FILE_TABLES[:2] + _FILE_TABLES[3:] + _OVERLAY_TABLES:
                self.db.execute(f"DELETE FROM checkpoint_{table[0]} WHERE checkpoint = ?", (cid,))
            self.db.execute("DELETE FROM checkpoints WHERE id = ?", (cid,))

    # -- sqlite and hybrid mode: copies of the live rows ---------------------------

    def copy_live(self, name: str, message: str | None, mode: str) -> CheckpointInfo:
        """Copy the live file rows (and the overlay's in hybrid mode) as checkpoint ``name``."""
        tables = _FILE_TABLES + (_OVERLAY_TABLES if mode == "hybrid" else ())
        with self.db.write():
            cid = self._new(name, message, mode)
            for table, columns, _key in tables:
                # Nameless inodes (open after unlink, or being written) are no part of the tree.
                where = "" if table == "entries" else _named(table)
                self.db.execute(
                    f"INSERT INTO checkpoint_{table} (checkpoint, {columns})"
                    f" SELECT ?, {columns} FROM {table}{where}",
                    (cid,),
                )
            return self.get(name)

    def restore_live(self, name: str, mode: str) -> None:
        """Make the live rows equal checkpoint ``name``'s, changing only rows that differ.

        Call inside a write transaction. Inodes the checkpoint lacks are left
        nameless (``nlink = 0``) for the backend to free unless a process has
        them open.
        """
        info = self.get(name)
        if info.mode != mode:
            raise OSError(
                errno.EINVAL,
                f"checkpoint {name} was taken in {info.mode} mode; the workspace is in {mode} mode",
            )
        cid = info.id
        execute = self.db.execute
        entry_same = (
            "SELECT 1 FROM checkpoint_entries c WHERE c.checkpoint = ?1 AND c.id = entries.id"
            " AND c.parent = entries.parent AND c.name = entries.name AND c.ino = entries.ino"
        )
        execute(f"DELETE FROM entries WHERE NOT EXISTS ({entry_same})", (cid,))
        kept = "SELECT ino FROM checkpoint_inodes WHERE checkpoint = ?1"
        execute(f"UPDATE inodes SET nlink = 0 WHERE nlink > 0 AND ino NOT IN ({kept})", (cid,))
        names = _INODE_COLUMNS.split(", ")[1:]
        same = " AND ".join(f"c.{n} IS inodes.{n}" for n in names)
        execute(
            f"UPDATE inodes SET ({', '.join(names)}) = (SELECT {', '.join('c.' + n for n in names)}"
            " FROM checkpoint_inodes c WHERE c.checkpoint = ?1 AND c.ino = inodes.ino)"
            f" WHERE ino IN ({kept}) AND NOT EXISTS (SELECT 1 FROM checkpoint_inodes c"
            f" WHERE c.checkpoint = ?1 AND c.ino = inodes.ino AND {same})",
            (cid,),
        )
        execute(
            f"INSERT INTO inodes ({_INODE_COLUMNS}) SELECT {_INODE_COLUMNS} FROM checkpoint_inodes"
            " WHERE checkpoint = ?1 AND ino NOT IN (SELECT ino FROM inodes)",
            (cid,),
        )
        execute("DELETE FROM orphans WHERE ino IN (SELECT ino FROM inodes WHERE nlink > 0)")
        tables = _FILE_TABLES[2:] + (_OVERLAY_TABLES if mode == "hybrid" else ())
        for table, columns, key in tables:
            owner = key[0]  # ino, or parent for whiteouts
            match = " AND ".join(f"c.{c} IS {table}.{c}" for c in columns.split(", "))
            execute(
                f"DELETE FROM {table} WHERE {owner} IN ({kept}) AND NOT EXISTS"
                f" (SELECT 1 FROM checkpoint_{table} c WHERE c.checkpoint = ?1 AND {match})",
                (cid,),
            )
            found = " AND ".join(f"t.{c} = c.{c}" for c in key)
            execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM checkpoint_{table} c"
                f" WHERE c.checkpoint = ?1 AND NOT EXISTS (SELECT 1 FROM {table} t WHERE {found})",
                (cid,),
            )
        execute(
            "INSERT INTO entries (id, parent, name, ino) SELECT id, parent, name, ino"
            " FROM checkpoint_entries c WHERE c.checkpoint = ?1"
            " AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = c.id)",
            (cid,),
        )

    # -- disk mode: the tree imported as rows -------------------------------------

    def import_tree(self, name: str, message: str | None, root: Path) -> CheckpointInfo:
        """Record the disk tree under ``root`` as checkpoint ``name``, content as shared chunks.

        Unchanged content is stored once: a second checkpoint of the same tree
        adds rows, not chunk bytes.
        """
        chunks = ChunkStore(self.db)
        with self.db.write():
            # The chunk size the rows are cut at, fixed once as sqlite mode fixes it.
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('chunk_size', ?)",
                (str(DEFAULT_CHUNK_SIZE),),
            )
            chunk_size = int(self.db.value("SELECT value FROM meta WHERE key = 'chunk_size'"))
            cid = self._new(name, message, "disk")
            importer = _TreeImport(self.db, chunks, cid, chunk_size)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                importer.add(ROOT_INO, os.fstat(fd), None)
                importer.walk(fd, ROOT_INO)
            finally:
                os.close(fd)
            return self.get(name)

    def open_view(self, checkpoint_id: int) -> CheckpointView:
        """A read-only database on which the file tables are checkpoint ``checkpoint_id``'s rows."""
        view = CheckpointView(self.db.path, checkpoint_id)
        view.blobs = self.db.blobs  # a checkpoint's spilled chunks are the live store's
        return view


def _named(table: str) -> str:
    live = "SELECT ino FROM inodes WHERE nlink > 0"
    if table == "inodes":
        return " WHERE nlink > 0"
    if table == "overlay_whiteouts":
        return f" WHERE parent IN ({live})"
    return f" WHERE ino IN ({live})"


class _TreeImport:
    """Rows for a disk tree: inode numbers handed out in walk order."""

    def __init__(self, db: Database, chunks: ChunkStore, cid: int, chunk_size: int) -> None:
        self.db = db
        self.chunks = chunks
        self.cid = cid
        self.chunk_size = chunk_size
        self.next_ino = ROOT_INO + 1
        self.next_entry = 1

    def add(self, ino: int, st: os.stat_result, target: bytes | None) -> None:
        size = (
            len(target) if target is not None else (st.st_size if stat.S_ISREG(st.st_mode) else 0)
        )
        self.db.execute(
            f"INSERT INTO checkpoint_inodes (checkpoint, {_INODE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.cid, ino, st.st_mode, st.st_uid, st.st_gid, size,
             2 if stat.S_ISDIR(st.st_mode) else 1, st.st_rdev,
             st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_mtime_ns, target),
        )  # fmt: skip

    def walk(self, dir_fd: int, parent: int) -> None:
        """Add what the directory open as ``dir_fd`` holds, each subdirectory reached
        from its parent's descriptor: no whole path, so no depth is too deep."""
        with os.scandir(dir_fd) as scan:
            found = sorted(scan, key=lambda e: e.name)
        for item in found:
            st = item.stat(follow_symlinks=False)  # a FIFO, socket or device: its row alone
            ino = self.next_ino
            self.next_ino += 1
            target = (
                os.readlink(os.fsencode(item.name), dir_fd=dir_fd)
                if stat.S_ISLNK(st.st_mode)
                else None
            )
            self.add(ino, st, target)
            self.db.execute(
                "INSERT INTO checkpoint_entries (checkpoint, id, parent, name, ino)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.cid, self.next_entry, parent, item.name, ino),
            )
            self.next_entry += 1
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(item.name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self.walk(fd, ino)
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                self._content(item.name, dir_fd, ino)

    def _content(self, name: str, dir_fd: int, ino: int) -> None:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            blobs = self.db.blobs
            spill = blobs is not None and blobs.spills(os.fstat(fd).st_size)
            idx = 0
            while data := os.read(fd, self.chunk_size):
                data = data.rstrip(b"\0")
                if data:  # an all-zero chunk is a hole
                    self.db.execute(
                        "INSERT INTO checkpoint_file_chunks (checkpoint, ino, idx, chunk)"
                        " VALUES (?, ?, ?, ?)",
                        (self.cid, ino, idx, self.chunks.put(data, spill=spill)),
                    )
                idx += 1
        finally:
            os.close(fd)


class CheckpointView(Database):
    """A connection per thread on which ``inodes``, ``entries``, ``file_chunks``,
    ``xattrs`` and the overlay tables are temporary views of one checkpoint.

    SQLite resolves an unqualified table name in the temp schema first, so the
    backends' own queries read the checkpoint. Views cannot be written: any
    write fails, and backends over a view are opened read-only anyway.
    """

    def __init__(self, path: Path, checkpoint: int) -> None:
        self.checkpoint_id = checkpoint
        super().__init__(path, "agent", create=False)
        self._journaled = False

    @property
    def conn(self) -> apsw.Connection:
        conn = super().conn
        if getattr(self._local, "viewing", None) is not conn:
            cid = int(self.checkpoint_id)
            for table, columns, _key in _FILE_TABLES + _OVERLAY_TABLES:
                conn.execute(
                    f"CREATE TEMP VIEW IF NOT EXISTS {table} AS SELECT {columns}"
                    f" FROM main.checkpoint_{table} WHERE checkpoint = {cid}"
                )
            # A disk-mode database has no inode counter; a backend over the view reads one.
            conn.execute(
                "CREATE TEMP VIEW IF NOT EXISTS meta AS SELECT key, value FROM main.meta"
                " UNION ALL SELECT 'next_ino', '1'"
                " WHERE NOT EXISTS (SELECT 1 FROM main.meta WHERE key = 'next_ino')"
            )
            conn.execute(
                "CREATE TEMP VIEW IF NOT EXISTS orphans AS SELECT ino, 0 AS pid"
                " FROM main.checkpoint_inodes WHERE 0"
            )
            self._local.viewing = conn
        return conn
