"""sqlite mode: the whole workspace as rows of the agent database.

Inodes, directory entries ``UNIQUE(parent, name)``, xattrs, and content as a
list of shared chunks per inode, all kept by :class:`FileTables`; this module
holds the POSIX rules of each operation on top of them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator

from vfs.backends.base import WRITE_FLAGS, Attr, Backend, Handle, StatFs, special_mode
from vfs.backends.chunks import SharedChunks
from vfs.backends.db import Database
from vfs.backends.names import NAME_MAX, check_name, split_path
from vfs.backends.renames import RENAME_EXCHANGE, RENAME_NOREPLACE, check_rename
from vfs.backends.sqlite.handle import SqliteHandle
from vfs.backends.sqlite.tables import FileTables, Slot

# The attribute namespaces Linux knows; any other is EOPNOTSUPP, as on ext4.
XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")

XATTR_CREATE = 1
XATTR_REPLACE = 2

_UID, _GID = os.getuid(), os.getgid()


class SqliteBackend(Backend):
    """A workspace stored in ``agent.sqlite``.

    Parameters
    ----------
    db:
        The agent database.
    read_only:
        Refuse every change with ``EROFS``.
    tables:
        The file tables to work on; by default plain ones over ``db``. The
        hybrid overlay passes tables whose files may read through to a lower
        tree.
    """

    mode = "sqlite"
    transactional = True

    def __init__(
        self, db: Database, *, read_only: bool = False, tables: FileTables | None = None
    ) -> None:
        self.db = db
        self.read_only = read_only
        self.tables = tables if tables is not None else FileTables(db, read_only=read_only)
        self.chunks = self.tables.chunks
        self.chunk_size = self.tables.chunk_size
        self.inode_locks = self.tables.inode_locks

    def reclaim_orphans(self) -> int:
        """Free nameless inodes that no process has open any more; returns how many."""
        return self.tables.reclaim_orphans()

    # -- paths -------------------------------------------------------------

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        found = self.tables.walk(path, follow=follow)
        return found if found is not None else super().resolve(path, follow=follow)

    def read_file(self, path: str) -> bytes:
        small = self.tables.walk_small_file(path)
        return small[1] if small is not None else super().read_file(path)

    # -- inode operations ----------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        attr = self.tables.entry(parent, name)
        if attr is None:
            # Only a miss pays for telling why, in the order Linux checks.
            if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise OSError(errno.ENAMETOOLONG, "File name too long", name)
            self.tables.directory(parent)  # NotADirectoryError under a file
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return attr

    def getattr(self, ino: int) -> Attr:
        attr = self.tables.get(ino)
        # Buffered writes show in size and mtime without being committed: the
        # kernel asks for attributes between a file's writes all the time.
        pending = [h for h in self.tables.open_files.handles(ino) if h.end]
        if pending:
            when = max(h.written_ns for h in pending)
            size = max(attr.size, *(h.end for h in pending))
            attr = attr.with_(size=size, mtime_ns=when, ctime_ns=max(attr.ctime_ns, when))
        return attr

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self.check_writable()
        tables = self.tables
        tables.open_files.flush(ino)
        with self.db.write():
            attr = tables.get(ino)
            now = time.time_ns()
            size = fields.get("size")
            if size is not None:
                if attr.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
                if not attr.is_file:
                    raise OSError(errno.EINVAL, "Invalid argument", f"inode {ino}")
                tables.truncate(ino, attr.size, size, now)
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
            return tables.get(ino)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        self.tables.directory(ino)
        yield from self.tables.entries(ino, offset)

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        check_name(name)
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            ino = tables.new_inode(stat.S_IFDIR | (mode & 0o7777), 2, uid, gid)
            tables.add_entry(parent, name, ino)
            tables.touch_dir(parent, time.time_ns(), +1)
            return tables.get(ino)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self.check_writable()
        check_name(name)
        tables = self.tables
        with self.db.write():
            self._free_slot(parent, name)
            now = time.time_ns()
            file_mode = stat.S_IFREG | (mode & 0o7777)
            ino = tables.new_inode(file_mode, 1, uid, gid, now=now)
            self.db.execute(
                "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
            )
            tables.touch_dir(parent, now)
            handle = SqliteHandle(self, tables, ino, new=True)
            # The row just written, without reading it back.
            return handle, Attr(ino, file_mode, 1, uid, gid, 0, now, now, now, now)

    def _free_slot(self, parent: int, name: str) -> None:
        """Check that ``parent`` is a live directory without ``name``, in one statement
        when it is; else raise what Linux would."""
        slot = self.tables.slot(parent, name)
        if slot is None:
            self.tables.directory(parent)  # raises why
        elif slot.child is not None:
            raise FileExistsError(errno.EEXIST, "File exists", name)

    def open(self, ino: int, flags: int = 0) -> Handle:
        attr = self.tables.get(ino)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
        if not attr.is_file:
            raise OSError(errno.EINVAL, "not a regular file", f"inode {ino}")
        writes = flags & WRITE_FLAGS
        if writes:
            self.check_writable()
        handle = SqliteHandle(self, self.tables, ino, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC:
            handle.truncate(0)  # even at size 0: other handles may hold unflushed writes
        return handle

    def unlink(self, parent: int, name: str) -> None:
        self.check_writable()
        tables = self.tables
        with self.db.write():
            ino = tables.remove_nondir_entry(parent, name)
            if ino is None:
                tables.directory(parent)
                if self.lookup(parent, name).is_dir:  # raises if the name is missing
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
                raise AssertionError("unreachable: a name that is no directory was not removed")
            now = time.time_ns()
            tables.touch_dir(parent, now)
            tables.drop_link(ino, now)

    def rmdir(self, parent: int, name: str) -> None:
        self.check_writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            self.tables.remove_dir(parent, name, attr, time.time_ns())

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self.check_writable()
        check_name(new_name)
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            tables.directory(new_parent)
            source = self.lookup(parent, name)
            target = tables.entry(new_parent, new_name)
            if not check_rename(
                parent, source, new_parent, target, new_name, flags,
                contains=tables.contains, is_empty=lambda d: tables.is_empty(d.ino),
            ):  # fmt: skip
                return
            now = time.time_ns()
            if flags & RENAME_EXCHANGE:
                assert target is not None  # check_rename refuses an exchange without one
                self._exchange(parent, name, source, new_parent, new_name, target, now)
                return
            if target is not None:
                if target.is_dir:
                    tables.remove_dir(new_parent, new_name, target, now)
                else:
                    tables.remove_entry(new_parent, new_name)
                    tables.drop_link(target.ino, now)
            tables.move_entry(parent, name, new_parent, new_name)
            moved_dir = source.is_dir and parent != new_parent
            tables.touch_dir(parent, now, -1 if moved_dir else 0)
            if new_parent != parent:
                tables.touch_dir(new_parent, now, +1 if moved_dir else 0)
            tables.set_ctime(now, source.ino)

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
        tables = self.tables
        tables.point_entry(parent, name, target.ino)
        tables.point_entry(new_parent, new_name, source.ino)
        if parent != new_parent and source.is_dir != target.is_dir:
            delta = 1 if target.is_dir else -1
            tables.touch_dir(parent, now, delta)
            tables.touch_dir(new_parent, now, -delta)
        else:
            tables.touch_dir(parent, now)
            tables.touch_dir(new_parent, now)
        tables.set_ctime(now, source.ino, target.ino)

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self.check_writable()
        check_name(new_name)
        tables = self.tables
        with self.db.write():
            attr = tables.get(ino)
            if attr.is_dir:
                raise PermissionError(errno.EPERM, "cannot hard-link a directory", new_name)
            tables.directory(new_parent)
            tables.add_entry(new_parent, new_name, ino)
            now = time.time_ns()
            tables.add_link(ino, now)
            tables.touch_dir(new_parent, now)
            return tables.get(ino)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        check_name(name)
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            ino = tables.new_inode(stat.S_IFLNK | 0o777, 1, uid, gid, len(target), target)
            tables.add_entry(parent, name, ino)
            tables.touch_dir(parent, time.time_ns())
            return tables.get(ino)

    def mknod(
        self, parent: int, name: str, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0
    ) -> Attr:
        self.check_writable()
        mode, rdev = special_mode(mode, rdev)
        check_name(name)
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            ino = tables.new_inode(mode, 1, uid, gid, rdev=rdev)
            tables.add_entry(parent, name, ino)
            tables.touch_dir(parent, time.time_ns())
            return tables.get(ino)

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
        self.tables.get(ino)
        value = self.db.value("SELECT value FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
        if value is None:
            raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
        return bytes(value)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        _check_xattr_name(name)
        self.check_writable()
        with self.db.write():
            attr = self.tables.get(ino)
            if name.startswith(b"user.") and not (attr.is_file or attr.is_dir):
                # As Linux: user attributes belong to file content, which only
                # regular files and directories have (symlinks and special files do not).
                raise PermissionError(errno.EPERM, "Operation not permitted", f"inode {ino}")
            exists = self.db.value("SELECT 1 FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
            if exists and flags & XATTR_CREATE:
                raise FileExistsError(errno.EEXIST, "File exists", name.decode(errors="replace"))
            if not exists and flags & XATTR_REPLACE:
                raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
            self.db.execute(
                "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
                (ino, name, value),
            )
            self.tables.set_ctime(time.time_ns(), ino)

    def listxattr(self, ino: int) -> list[bytes]:
        self.tables.get(ino)
        return [bytes(r[0]) for r in self.db.query("SELECT name FROM xattrs WHERE ino = ?", (ino,))]

    def removexattr(self, ino: int, name: bytes) -> None:
        _check_xattr_name(name)
        self.check_writable()
        with self.db.write():
            self.tables.get(ino)
            self.db.execute("DELETE FROM xattrs WHERE ino = ? AND name = ?", (ino, name))
            if not self.db.conn.changes():
                raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))

    # -- content -----------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        self.tables.open_files.flush(ino)
        return self.tables.read(ino, offset, size)

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        """The whole-file write in one transaction with as few statements as it takes."""
        self.check_writable()
        check_name(name)
        with self.db.write():
            slot = self.tables.slot(parent, name)
            if slot is None:
                self.tables.directory(parent)  # raises why
                raise AssertionError("unreachable: slot() found no live directory")
            if slot.child_mode is not None and stat.S_ISDIR(slot.child_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            return self.store_file(parent, name, data, mode, slot.child)

    def write_plain(
        self,
        path: str,
        data: bytes,
        mode: int = 0o644,
        *,
        exclusive: bool = False,
        accept: Callable[[Slot, str], bool] | None = None,
    ) -> Attr | None:
        """The whole-file write by path, walk included, in one transaction; None when
        the path needs the name-by-name walk (a symlink, a directory or an error),
        or when ``accept`` (a layer over these tables asked, in the transaction,
        with the slot found and the name) says no."""
        self.check_writable()
        parts = split_path(path)
        with self.db.write():
            slot = self.tables.slot_at(parts)
            if slot is None:
                return None
            if slot.child_mode is not None and (exclusive or not stat.S_ISREG(slot.child_mode)):
                return None
            if accept is not None and not accept(slot, parts[-1]):
                return None
            return self.store_file(slot.parent, parts[-1], data, mode, slot.child)

    def store_file(
        self, parent: int, name: str, data: bytes, mode: int, existing: int | None
    ) -> Attr:
        """A new inode holding ``data`` named ``parent/name``, in place of ``existing``
        (the inode the name holds now, or None). The caller holds the write
        transaction in which it found both; nothing is checked again."""
        tables = self.tables
        now = time.time_ns()
        file_mode = stat.S_IFREG | (mode & 0o7777)
        ino = tables.new_inode(file_mode, 1, _UID, _GID, len(data), now=now)
        cs = self.chunk_size
        pieces = {idx: data[idx * cs : (idx + 1) * cs] for idx in range((len(data) + cs - 1) // cs)}
        tables.store_chunks(ino, pieces, size=len(data))
        if existing is None:
            self.db.execute(
                "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
            )
        else:
            tables.point_entry(parent, name, ino)
            tables.drop_link(existing, now)
        tables.touch_dir(parent, now)
        # The row just written, without reading it back.
        return Attr(ino, file_mode, 1, _UID, _GID, len(data), now, now, now, now)

    def snapshot(self) -> contextlib.AbstractContextManager[object]:
        return self.db.read()

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self.check_writable()
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            ino = tables.new_inode(stat.S_IFREG | (mode & 0o7777), 0, _UID, _GID)
            handle = SqliteHandle(self, tables, ino, new=True)
            tables.add_orphan(ino)
            return handle

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self.check_writable()
        check_name(name)
        handle.flush()
        tables = self.tables
        with self.db.write():
            tables.directory(parent)
            existing = tables.entry(parent, name)
            now = time.time_ns()
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
                tables.remove_entry(parent, name)
                tables.drop_link(existing.ino, now)
            self.db.execute(
                "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)",
                (parent, name, handle.ino),
            )
            tables.add_link(handle.ino, now)
            tables.touch_dir(parent, now)
            return tables.get(handle.ino)

    def checksum(self, ino: int) -> str:
        self.tables.open_files.flush(ino)
        return self.tables.checksum(ino)

    def shared_chunks(self, ino: int) -> SharedChunks:
        """The file's chunk rows, with the writes buffered in this process stored first."""
        self.tables.open_files.flush(ino)
        with self.db.read():
            attr = self.tables.get(ino)
            if not attr.is_file:
                raise IsADirectoryError(errno.EISDIR, "not a regular file", f"inode {ino}")
            return SharedChunks(attr.size, self.chunk_size, self.tables.chunk_refs(ino))

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        """Share the source's chunks: no content bytes are copied."""
        tables = self.tables
        tables.open_files.flush(ino)
        with self.db.write():
            source = tables.get(ino)
            if source.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            if not source.is_file:  # as the other engines' copy, which opens it, says
                raise OSError(errno.EINVAL, "not a regular file", name)
            handle = self.tmpfile(parent, source.mode & 0o7777)
            tables.share_chunks(ino, handle.ino)
            self.db.execute("UPDATE inodes SET size = ? WHERE ino = ?", (source.size, handle.ino))
            try:
                return self.publish(handle, parent, name)
            finally:
                handle.close()

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.db.write()

    def close(self) -> None:
        self.tables.close()


__all__ = [
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "SqliteBackend",
    "SqliteHandle",
]


def _check_xattr_name(name: bytes) -> None:
    shown = name.decode(errors="replace")
    if not name.startswith(XATTR_NAMESPACES):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", shown)
    if len(name) > 255:
        raise OSError(errno.ERANGE, "attribute name too long", shown)
