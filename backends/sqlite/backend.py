"""sqlite mode: the whole workspace as rows of the agent database.

Inodes, directory entries ``UNIQUE(parent, name)``, xattrs, and content as a
list of shared chunks per inode. Chunk ``idx`` covers bytes
``[idx * chunk_size, (idx + 1) * chunk_size)``; its stored bytes have trailing
zeros trimmed, so a missing or short chunk reads as zeros (sparse files cost
nothing) and equal content always has equal chunks.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

import xxhash

from vfs.backends.base import ROOT_INO, Attr, Backend, Handle, StatFs, close_all
from vfs.backends.chunks import DEFAULT_CHUNK_SIZE, ChunkStore, verified
from vfs.backends.db import Database
from vfs.backends.names import check_name, split_path
from vfs.backends.sqlite.handle import MAX_FILE_SIZE, SqliteHandle
from vfs.backends.sqlite.inode_locks import InodeLocks

# The attribute namespaces Linux knows; any other is EOPNOTSUPP, as on ext4.
XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2


_UID, _GID = os.getuid(), os.getgid()
_FAST_DEPTH = 24  # deeper paths resolve name by name
# Inode numbers the counter hands out stay below this; the hybrid overlay and
# the reserved /.vfs tree number their inodes above it.
NUMBERED_INO_LIMIT = 1 << 61

_INODE_COLUMNS = "ino, mode, nlink, uid, gid, size, atime_ns, mtime_ns, ctime_ns, btime_ns, rdev"


def _attr(row: Any) -> Attr:
    return Attr(*row)


# Hot-path queries use subqueries, not joins: this SQLite build plans joins
# again on every run with new parameters, which costs several times the query.


class SqliteBackend(Backend):
    """A workspace stored in ``agent.sqlite``."""

    mode = "sqlite"
    transactional = True

    def __init__(self, db: Database, *, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only
        self.chunks = ChunkStore(db)
        self._handles: dict[int, list[SqliteHandle]] = {}
        self.inode_locks = InodeLocks(db.path.with_name(db.path.name + ".locks"))
        self._lock = threading.RLock()
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

    # -- helpers -----------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system")

    def _get(self, ino: int) -> Attr:
        row = self.db.one(f"SELECT {_INODE_COLUMNS} FROM inodes WHERE ino = ?", (ino,))
        if row is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return _attr(row)

    def _dir(self, ino: int) -> Attr:
        attr = self._get(ino)
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {ino}")
        if attr.nlink == 0:
            raise FileNotFoundError(errno.ENOENT, "directory was removed", f"inode {ino}")
        return attr

    def _entry(self, parent: int, name: str) -> Attr | None:
        # A subquery rather than a join: SQLite runs this form several times faster.
        row = self.db.one(
            f"SELECT {_INODE_COLUMNS} FROM inodes"
            " WHERE ino = (SELECT ino FROM entries WHERE parent = ? AND name = ?)",
            (parent, name),
        )
        return None if row is None else _attr(row)

    def _touch_dir(self, ino: int, now: int, nlink_delta: int = 0) -> None:
        self.db.execute(
            "UPDATE inodes SET mtime_ns = ?, ctime_ns = ?, nlink = nlink + ? WHERE ino = ?",
            (now, now, nlink_delta, ino),
        )

    def _new_inode(
        self, mode: int, nlink: int, uid: int, gid: int, size: int = 0, target: bytes | None = None
    ) -> int:
        # Numbers come from a counter and are never reused: a handle another
        # process still holds on a freed inode must not reach a new file.
        ino = int(
            self.db.value(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_ino'"
                " RETURNING CAST(value AS INTEGER)"
            )
        )
        now = time.time_ns()
        self.db.execute(
            "INSERT INTO inodes (ino, mode, nlink, uid, gid, size, atime_ns, mtime_ns, ctime_ns,"
            " btime_ns, target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ino, mode, nlink, uid, gid, size, now, now, now, now, target),
        )
        return ino

    def _add_entry(self, parent: int, name: str, ino: int) -> None:
        if self._entry(parent, name) is not None:
            raise FileExistsError(errno.EEXIST, "File exists", name)
        self.db.execute(
            "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
        )

    def _drop_link(self, ino: int, now: int) -> None:
        """One name of ``ino`` is gone; free it when it has none left and nobody has it open."""
        self.db.execute(
            "UPDATE inodes SET nlink = nlink - 1, ctime_ns = ? WHERE ino = ?", (now, ino)
        )
        self._release_if_unused(ino)

    def _release_if_unused(self, ino: int) -> None:
        nlink = self.db.value("SELECT nlink FROM inodes WHERE ino = ?", (ino,))
        if nlink is None or nlink > 0:
            return
        with self._lock:
            is_open = bool(self._handles.get(ino))
        if is_open or self.inode_locks.held_elsewhere(ino):
            # Still open here or in another process: its last close frees it.
            self.db.execute(
                "INSERT OR REPLACE INTO orphans (ino, pid) VALUES (?, ?)", (ino, os.getpid())
            )
        else:
            self.db.execute("DELETE FROM inodes WHERE ino = ?", (ino,))

    def _flush_ino(self, ino: int) -> None:
        with self._lock:
            handles = list(self._handles.get(ino, ()))
        for handle in handles:
            handle.flush()

    def reclaim_orphans(self) -> int:
        """Free nameless inodes that no process has open any more; returns how many."""
        with self.db.write():
            nameless = [r[0] for r in self.db.query("SELECT ino FROM inodes WHERE nlink = 0")]
            with self._lock:
                unused = [ino for ino in nameless if not self._handles.get(ino)]
            dead = [ino for ino in unused if not self.inode_locks.held_elsewhere(ino)]
            for ino in dead:
                self.db.execute("DELETE FROM inodes WHERE ino = ? AND nlink = 0", (ino,))
            return len(dead)

    # -- paths -------------------------------------------------------------

    @staticmethod
    @functools.cache
    def _path_sql(depth: int, with_data: bool) -> str:
        """One statement that walks ``depth`` names from the root, as nested subqueries."""
        ino = str(ROOT_INO)
        for k in range(1, depth + 1):
            ino = f"(SELECT ino FROM entries WHERE parent = {ino} AND name = ?{k})"
        first = "(SELECT chunk FROM file_chunks WHERE ino = inodes.ino AND idx = 0)"
        data = (
            f", (SELECT data FROM chunks WHERE id = {first})"
            f", (SELECT hash FROM chunks WHERE id = {first})"
            if with_data
            else ""
        )
        return f"SELECT {_INODE_COLUMNS}{data} FROM inodes WHERE ino = {ino}"

    def _walk(self, path: str, follow: bool, with_data: bool) -> Any:
        """The inode row at ``path`` in one statement, or None when the slow path must
        decide (a symlink on the way, a missing name, an error to report)."""
        parts = split_path(path)
        if not parts or len(parts) > _FAST_DEPTH:
            return None
        row = self.db.one(self._path_sql(len(parts), with_data), parts)
        if row is None or (follow and stat.S_ISLNK(row[1])) or row[0] in self._handles:
            return None
        return row

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        row = self._walk(path, follow, with_data=False)
        return _attr(row) if row is not None else super().resolve(path, follow=follow)

    def read_file(self, path: str) -> bytes:
        row = self._walk(path, True, with_data=True)
        if row is None or not stat.S_ISREG(row[1]) or row[5] > self.chunk_size:
            return super().read_file(path)
        size, data = row[5], row[-2] or b""
        if data:
            verified(data, row[-1], path)
        if len(data) == size:
            return bytes(data)
        return bytes(data) + bytes(size - len(data))  # trailing zeros are not stored

    # -- inode operations ----------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        attr = self._entry(parent, name)
        if attr is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return attr

    def getattr(self, ino: int) -> Attr:
        attr = self._get(ino)
        # Buffered writes show in size and mtime without being committed: the
        # kernel asks for attributes between a file's writes all the time.
        pending = [h for h in self._handles.get(ino, ()) if h.end]
        if pending:
            when = max(h.written_ns for h in pending)
            size = max(attr.size, *(h.end for h in pending))
            attr = attr.with_(size=size, mtime_ns=when, ctime_ns=max(attr.ctime_ns, when))
        return attr

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self._writable()
        self._flush_ino(ino)
        with self.db.write():
            attr = self._get(ino)
            now = time.time_ns()
            size = fields.get("size")
            if size is not None:
                if attr.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
                if not attr.is_file:
                    raise OSError(errno.EINVAL, "Invalid argument", f"inode {ino}")
                self._truncate(ino, attr.size, size, now)
            changes: dict[str, int] = {}
            if fields.get("mode") is not None:
                changes["mode"] = stat.S_IFMT(attr.mode) | (int(fields["mode"] or 0) & 0o7777)
            for key in ("uid", "gid", "atime_ns", "mtime_ns"):
                value = fields.get(key)
                if value is not None:
                    changes[key] = int(value)
            changes["ctime_ns"] = int(fields.get("ctime_ns") or now)
            assignments = ", ".join(f"{key} = :{key}" for key in changes)
            self.db.execute(
                f"UPDATE inodes SET {assignments} WHERE ino = :ino", {**changes, "ino": ino}
            )
            return self._get(ino)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        self._dir(ino)
        columns = ", ".join("i." + c for c in _INODE_COLUMNS.split(", "))
        while True:
            rows = self.db.query(
                f"SELECT e.id, e.name, {columns} FROM entries e JOIN inodes i ON i.ino = e.ino"
                " WHERE e.parent = ? AND e.id > ? ORDER BY e.id LIMIT 512",
                (ino, offset),
            )
            for row in rows:
                offset = row[0]
                yield row[1], _attr(row[2:]), offset
            if len(rows) < 512:
                return

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self._writable()
        check_name(name)
        with self.db.write():
            self._dir(parent)
            ino = self._new_inode(stat.S_IFDIR | (mode & 0o7777), 2, uid, gid)
            self._add_entry(parent, name, ino)
            self._touch_dir(parent, time.time_ns(), +1)
            return self._get(ino)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self._writable()
        check_name(name)
        with self.db.write():
            self._dir(parent)
            ino = self._new_inode(stat.S_IFREG | (mode & 0o7777), 1, uid, gid)
            self._add_entry(parent, name, ino)
            self._touch_dir(parent, time.time_ns())
            handle = SqliteHandle(self, ino)
            return handle, self._get(ino)

    def open(self, ino: int, flags: int = 0) -> Handle:
        attr = self._get(ino)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
        if not attr.is_file:
            raise OSError(errno.EINVAL, "not a regular file", f"inode {ino}")
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        if writes:
            self._writable()
        handle = SqliteHandle(self, ino, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC:
            handle.truncate(0)  # even at size 0: other handles may hold unflushed writes
        return handle

    def unlink(self, parent: int, name: str) -> None:
        self._writable()
        with self.db.write():
            self._dir(parent)
            attr = self.lookup(parent, name)
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            now = time.time_ns()
            self.db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, name))
            self._touch_dir(parent, now)
            self._drop_link(attr.ino, now)

    def rmdir(self, parent: int, name: str) -> None:
        self._writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            self._remove_dir(parent, name, attr, time.time_ns())

    def _remove_dir(self, parent: int, name: str, attr: Attr, now: int) -> None:
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
        if self.db.value("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (attr.ino,)):
            raise OSError(errno.ENOTEMPTY, "Directory not empty", name)
        self.db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, name))
        self.db.execute("DELETE FROM inodes WHERE ino = ?", (attr.ino,))
        self._touch_dir(parent, now, -1)

    def _is_ancestor(self, ancestor: int, ino: int) -> bool:
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

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self._writable()
        check_name(new_name)
        with self.db.write():
            self._dir(parent)
            self._dir(new_parent)
            source = self.lookup(parent, name)
            target = self._entry(new_parent, new_name)
            now = time.time_ns()
            if flags & RENAME_EXCHANGE:
                if target is None:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", new_name)
                self._exchange(parent, name, source, new_parent, new_name, target, now)
                return
            if target is not None and flags & RENAME_NOREPLACE:
                raise FileExistsError(errno.EEXIST, "File exists", new_name)
            if source.is_dir and self._is_ancestor(source.ino, new_parent):
                raise OSError(errno.EINVAL, "cannot move a directory into itself", new_name)
            if target is not None:
                if target.ino == source.ino:
                    return  # two names of one inode: POSIX says do nothing
                if source.is_dir and not target.is_dir:
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", new_name)
                if target.is_dir and not source.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", new_name)
                if target.is_dir:
                    self._remove_dir(new_parent, new_name, target, now)
                else:
                    self.db.execute(
                        "DELETE FROM entries WHERE parent = ? AND name = ?", (new_parent, new_name)
                    )
                    self._drop_link(target.ino, now)
            self.db.execute(
                "UPDATE entries SET parent = ?, name = ? WHERE parent = ? AND name = ?",
                (new_parent, new_name, parent, name),
            )
            moved_dir = source.is_dir and parent != new_parent
            self._touch_dir(parent, now, -1 if moved_dir else 0)
            if new_parent != parent:
                self._touch_dir(new_parent, now, +1 if moved_dir else 0)
            self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE ino = ?", (now, source.ino))

    def _exchange(
        self,
        parent: int,
        name: str,
        source: Attr,
        new_parent: int,
        new_name: str,
        target: Attr,
        now: int,
    ) -> None:
        if source.is_dir and self._is_ancestor(source.ino, new_parent):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", new_name)
        if target.is_dir and self._is_ancestor(target.ino, parent):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", name)
        self.db.execute(
            "UPDATE entries SET ino = ? WHERE parent = ? AND name = ?", (target.ino, parent, name)
        )
        self.db.execute(
            "UPDATE entries SET ino = ? WHERE parent = ? AND name = ?",
            (source.ino, new_parent, new_name),
        )
        if parent != new_parent and source.is_dir != target.is_dir:
            delta = 1 if target.is_dir else -1
            self._touch_dir(parent, now, delta)
            self._touch_dir(new_parent, now, -delta)
        else:
            self._touch_dir(parent, now)
            self._touch_dir(new_parent, now)
        self.db.execute(
            "UPDATE inodes SET ctime_ns = ? WHERE ino IN (?, ?)", (now, source.ino, target.ino)
        )

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self._writable()
        check_name(new_name)
        with self.db.write():
            attr = self._get(ino)
            if attr.is_dir:
                raise PermissionError(errno.EPERM, "cannot hard-link a directory", new_name)
            self._dir(new_parent)
            self._add_entry(new_parent, new_name, ino)
            now = time.time_ns()
            self.db.execute(
                "UPDATE inodes SET nlink = nlink + 1, ctime_ns = ? WHERE ino = ?", (now, ino)
            )
            self.db.execute("DELETE FROM orphans WHERE ino = ?", (ino,))
            self._touch_dir(new_parent, now)
            return self._get(ino)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self._writable()
        check_name(name)
        with self.db.write():
            self._dir(parent)
            ino = self._new_inode(stat.S_IFLNK | 0o777, 1, uid, gid, len(target), target)
            self._add_entry(parent, name, ino)
            self._touch_dir(parent, time.time_ns())
            return self._get(ino)

    def readlink(self, ino: int) -> bytes:
        row = self.db.one("SELECT mode, target FROM inodes WHERE ino = ?", (ino,))
        if row is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        if not stat.S_ISLNK(row[0]):
            raise OSError(errno.EINVAL, "Invalid argument: not a symlink", f"inode {ino}")
        return bytes(row[1])

    def statfs(self) -> StatFs:
        host = os.statvfs(self.db.path.parent)
        files = int(self.db.value("SELECT count(*) FROM inodes"))
        return StatFs(
            block_size=host.f_bsize,
            blocks=host.f_blocks,
            blocks_free=host.f_bfree,
            blocks_available=host.f_bavail,
            files=files + host.f_ffree,
            files_free=host.f_ffree,
            name_max=255,
        )

    # -- xattrs ------------------------------------------------------------

    def getxattr(self, ino: int, name: bytes) -> bytes:
        _check_xattr_name(name)
        self._get(ino)
        value = self.db.value("SELECT value FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
        if value is None:
            raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
        return bytes(value)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        _check_xattr_name(name)
        self._writable()
        with self.db.write():
            self._get(ino)
            exists = self.db.value("SELECT 1 FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
            if exists and flags & XATTR_CREATE:
                raise FileExistsError(errno.EEXIST, "File exists", name.decode(errors="replace"))
            if not exists and flags & XATTR_REPLACE:
                raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
            self.db.execute(
                "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
                (ino, name, value),
            )
            self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE ino = ?", (time.time_ns(), ino))

    def listxattr(self, ino: int) -> list[bytes]:
        self._get(ino)
        return [bytes(r[0]) for r in self.db.query("SELECT name FROM xattrs WHERE ino = ?", (ino,))]

    def removexattr(self, ino: int, name: bytes) -> None:
        _check_xattr_name(name)
        self._writable()
        with self.db.write():
            self._get(ino)
            self.db.execute("DELETE FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
            if not self.db.conn.changes():
                raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))

    # -- content -----------------------------------------------------------

    def _read(self, ino: int, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        cs = self.chunk_size
        # One statement returns the size (idx -1) and the chunks in range.
        rows = self.db.query(
            "SELECT -1, size, NULL FROM inodes WHERE ino = ?1 UNION ALL"
            " SELECT idx, (SELECT data FROM chunks WHERE id = chunk),"
            " (SELECT hash FROM chunks WHERE id = chunk) FROM file_chunks"
            " WHERE ino = ?1 AND idx BETWEEN ?2 AND ?3",
            (ino, offset // cs, (offset + length - 1) // cs),
        )
        size = next((row[1] for row in rows if row[0] == -1), None)
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        where = f"inode {ino}"
        rows = [(i, verified(data, digest, where)) for i, data, digest in rows if i != -1]
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

    def _chunk(self, ino: int, idx: int) -> bytes:
        row = self.db.one(
            "SELECT data, hash FROM chunks"
            " WHERE id = (SELECT chunk FROM file_chunks WHERE ino = ? AND idx = ?)",
            (ino, idx),
        )
        return b"" if row is None else verified(bytes(row[0]), row[1], f"inode {ino}")

    def _store_chunk(self, ino: int, idx: int, data: bytes) -> None:
        data = data.rstrip(b"\0")
        if not data:
            self.db.execute("DELETE FROM file_chunks WHERE ino = ? AND idx = ?", (ino, idx))
            return
        chunk = self.chunks.put(data)
        self.db.execute(
            "INSERT INTO file_chunks (ino, idx, chunk) VALUES (?, ?, ?)"
            " ON CONFLICT (ino, idx) DO UPDATE SET chunk = excluded.chunk",
            (ino, idx, chunk),
        )

    def _truncate(self, ino: int, old_size: int, size: int, now: int) -> None:
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
                self._store_chunk(ino, last, self._chunk(ino, last)[: size % cs])
        self.db.execute(
            "UPDATE inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?",
            (size, now, now, ino),
        )

    def read(self, ino: int, offset: int, size: int) -> bytes:
        self._flush_ino(ino)
        return self._read(ino, offset, size)

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        """The whole-file write in one transaction with as few statements as it takes."""
        self._writable()
        check_name(name)
        with self.db.write():
            self._dir(parent)
            existing = self._entry(parent, name)
            if existing is not None and existing.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            ino = self._new_inode(stat.S_IFREG | (mode & 0o7777), 1, _UID, _GID, len(data))
            cs = self.chunk_size
            for idx in range(0, (len(data) + cs - 1) // cs):
                self._store_chunk(ino, idx, data[idx * cs : (idx + 1) * cs])
            now = time.time_ns()
            if existing is None:
                self.db.execute(
                    "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
                )
            else:
                self.db.execute(
                    "UPDATE entries SET ino = ? WHERE parent = ? AND name = ?", (ino, parent, name)
                )
                self._drop_link(existing.ino, now)
            self._touch_dir(parent, now)
            return self._get(ino)

    def snapshot(self) -> contextlib.AbstractContextManager[object]:
        return self.db.read()

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self._writable()
        with self.db.write():
            self._dir(parent)
            ino = self._new_inode(stat.S_IFREG | (mode & 0o7777), 0, _UID, _GID)
            handle = SqliteHandle(self, ino)
            self.db.execute("INSERT INTO orphans (ino, pid) VALUES (?, ?)", (ino, os.getpid()))
            return handle

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self._writable()
        check_name(name)
        handle.flush()
        with self.db.write():
            self._dir(parent)
            existing = self._entry(parent, name)
            now = time.time_ns()
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
                self.db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, name))
                self._drop_link(existing.ino, now)
            self.db.execute(
                "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)",
                (parent, name, handle.ino),
            )
            self.db.execute(
                "UPDATE inodes SET nlink = nlink + 1, ctime_ns = ? WHERE ino = ?", (now, handle.ino)
            )
            self.db.execute("DELETE FROM orphans WHERE ino = ?", (handle.ino,))
            self._touch_dir(parent, now)
            return self._get(handle.ino)

    def checksum(self, ino: int) -> str:
        self._flush_ino(ino)
        digest = xxhash.xxh3_128()
        with self.db.read():
            attr = self._get(ino)
            digest.update(f"{attr.size}:".encode())
            for idx, chunk_hash in self.db.query(
                "SELECT f.idx, c.hash FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
                " WHERE f.ino = ? ORDER BY f.idx",
                (ino,),
            ):
                digest.update(idx.to_bytes(8, "little") + bytes(chunk_hash))
        return digest.hexdigest()

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        """Share the source's chunks: no content bytes are copied."""
        self._flush_ino(ino)
        with self.db.write():
            source = self._get(ino)
            if not source.is_file:
                raise IsADirectoryError(errno.EISDIR, "not a regular file", name)
            handle = self.tmpfile(parent, source.mode & 0o7777)
            self.db.execute(
                "INSERT INTO file_chunks (ino, idx, chunk) SELECT ?, idx, chunk FROM file_chunks"
                " WHERE ino = ?",
                (handle.ino, ino),
            )
            self.db.execute("UPDATE inodes SET size = ? WHERE ino = ?", (source.size, handle.ino))
            try:
                return self.publish(handle, parent, name)
            finally:
                handle.close()

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.db.write()

    def close(self) -> None:
        with self._lock:
            handles = [h for hs in self._handles.values() for h in hs]
        try:
            close_all(handles)
        finally:
            self.inode_locks.close()


__all__ = ["RENAME_EXCHANGE", "RENAME_NOREPLACE", "SqliteBackend", "SqliteHandle"]


def _check_xattr_name(name: bytes) -> None:
    shown = name.decode(errors="replace")
    if not name.startswith(XATTR_NAMESPACES):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", shown)
    if len(name) > 255:
        raise OSError(errno.ERANGE, "attribute name too long", shown)
