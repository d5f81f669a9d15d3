"""hybrid mode: a copy-on-write overlay of the agent's disk tree.

The disk directory is the read-only *lower* layer; every change is stored in
the agent database, in the sqlite-mode tables (the *upper* layer): an upper
object is changed by a :class:`SqliteBackend` over those tables
(:class:`OverlayTables`, whose files may read through to lower bytes), and
this backend merges it with the lower tree.

- Objects only in the lower tree get a synthetic inode number,
  ``LOWER_INO_BASE | st_ino``, which no upper inode uses (upper inodes are
  numbered below the base). Copying an object up keeps its number. A disk
  object whose natural number belongs to an upper inode copied from another
  path (a freed inode number reused, a file moved on disk), or that lives on
  another device, gets a number hashed from device, inode and path instead.
- An upper directory with an ``overlay_nodes.lower_path`` merges that lower
  directory's entries (minus whiteouts); without one it is opaque.
- An upper file with a ``lower_path`` reads unchanged chunks from the lower
  file (see ``vfs.backends.hybrid.upper``).
- Opening or reading a lower file copies nothing; the first change copies the
  object's metadata up (and its ancestors'), recording the lower file's size,
  mtime and hash for conflict checks at commit. Until its content changes, the
  upper file shows the lower file as it is now; the first content change
  records the lower file as it is then instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from vfs.backends.base import ROOT_INO, WRITE_FLAGS, Attr, Backend, Handle, StatFs
from vfs.backends.chunks import chunk_hash, content_checksum
from vfs.backends.db import Database
from vfs.backends.host import join
from vfs.backends.hybrid.handles import LowerHandle, OverlayHandle
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.hybrid.nodes import (
    LOWER_INO_BASE,
    Layout,
    LowerNumbers,
    LowerRef,
    lower_attr,
)
from vfs.backends.hybrid.upper import OverlayTables
from vfs.backends.names import check_name
from vfs.backends.renames import RENAME_EXCHANGE, check_rename
from vfs.backends.sqlite.backend import SqliteBackend
from vfs.backends.sqlite.tables import Slot

# readdir offsets: lower entries by sorted position below this, upper entries above.
_UPPER_OFFSET = 1 << 48


class HybridBackend(Backend):
    """An overlay: reads fall through to ``lower``; changes go to the database.

    ``tables`` are the upper layer's rows; ``upper`` is the sqlite-mode
    workspace over them, which applies a change once the objects it touches
    are copied up.
    """

    mode = "hybrid"
    transactional = True

    def __init__(self, db: Database, lower: Path, *, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only
        self.lower = LowerTree(lower)
        self.numbers = LowerNumbers(db, self.lower)
        self._refs: dict[int, LowerRef] = {}
        self.tables = OverlayTables(db, self.lower, read_only=read_only)
        self.upper = SqliteBackend(db, read_only=read_only, tables=self.tables)
        self.chunks = self.tables.chunks
        self.chunk_size = self.tables.chunk_size
        if not read_only:
            self.tables.merge_root()

    # -- the two layers ----------------------------------------------------

    def _is_upper(self, ino: int) -> bool:
        return self.tables.exists(ino)

    def _merged_lower(self, ino: int) -> str | None:
        """The lower directory merged into directory ``ino``, if any."""
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            # A read-only overlay of a new database has no root row yet: all merges.
            default = "" if ino == ROOT_INO and self.read_only else None
            return self.tables.merged_dir(ino, default)
        return self._ref(ino).path

    def _ref(self, ino: int) -> LowerRef:
        ref = self._refs.get(ino)
        if ref is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return ref

    def _lower_child(self, parent: int, lower_dir: str, name: str) -> Attr | None:
        path = join(lower_dir, name)
        st = self.lower.lstat_or_none(path)
        return None if st is None else self._lower_object(parent, name, path, st)

    def _lower_object(self, parent: int, name: str, path: str, st: os.stat_result) -> Attr:
        """The attributes of lower object ``st`` at ``path``, numbered as it was before."""
        ino, upper = self.numbers.identify(st, path)
        self._refs[ino] = LowerRef(parent, name, path)
        return lower_attr(ino, st) if upper is None else self._shown(upper)

    def _layout(self, ino: int) -> Layout | None:
        return self.tables.layout(ino)

    def _shown(self, attr: Attr) -> Attr:
        """``attr`` as the overlay shows it: a file whose content never changed is
        the lower file as it is now, not as it was when copied up."""
        layout = self._layout(attr.ino) if attr.is_file else None
        if layout is None or not layout.live:
            return attr
        return attr.with_(size=layout.size, mtime_ns=layout.mtime_ns or attr.mtime_ns)

    # -- copy-up -----------------------------------------------------------

    def copy_up(self, ino: int) -> None:
        """Make ``ino`` (and its ancestors) upper objects; copies metadata, never content."""
        self.check_writable()
        if self._is_upper(ino):
            self.tables.rebase(ino)  # its content may change next
            return
        with self.db.write():
            if self._is_upper(ino):
                return
            ref = self._ref(ino)
            self.copy_up(ref.parent)
            if self.tables.entry(ref.parent, ref.name) or self.tables.hides(ref.parent, ref.name):
                # Its name was replaced or removed since it was looked up: the
                # lower object is no longer in the overlay.
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
            self.tables.copy_up(ino, ref.parent, ref.name, ref.path)

    def _hide_lower(self, parent: int, name: str, *, replaced: bool = False) -> None:
        """Whiteout the lower entry ``name`` of upper directory ``parent``, if there is one.

        A replaced file records its hash and a directory a stamp of its whole
        tree, so commit can tell whether the disk changed since; a deleted
        file is checked by size and mtime only.
        """
        lower_dir = self._merged_lower(parent)
        if lower_dir is not None:
            self.tables.add_whiteout(parent, name, join(lower_dir, name), replaced=replaced)

    def _must_not_exist(self, parent: int, name: str) -> None:
        check_name(name)
        if self.lookup_or_none(parent, name) is not None:
            raise FileExistsError(errno.EEXIST, "File exists", name)

    # -- inode operations ----------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        attr = self.tables.entry(parent, name)
        if attr is not None:
            return self._shown(attr)
        # A replacement of a lower file adds the upper entry and the whiteout
        # together: look again and decide in one snapshot, or the name could
        # seem to be in neither layer.
        with self.db.read():
            attr = self.tables.entry(parent, name)
            if attr is not None:
                return self._shown(attr)
            return self._lookup_lower(parent, name)

    def _lookup_lower(self, parent: int, name: str) -> Attr:
        # One query says whether the parent is upper, what it merges and what it hides.
        row = self.db.one(
            "SELECT i.mode, i.nlink, n.lower_path, EXISTS (SELECT 1 FROM overlay_whiteouts w"
            " WHERE w.parent = i.ino AND w.name = ?) FROM inodes i"
            " LEFT JOIN overlay_nodes n ON n.ino = i.ino WHERE i.ino = ?",
            (name, parent),
        )
        if row is not None:
            if not stat.S_ISDIR(row[0]):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {parent}")
            if row[1] == 0 or row[3]:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
            lower_dir = row[2]
            if lower_dir is None and parent == ROOT_INO and self.read_only:
                lower_dir = ""
        elif parent < LOWER_INO_BASE:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {parent}")
        else:
            lower_dir = self._ref(parent).path
        found = None if lower_dir is None else self._lower_child(parent, lower_dir, name)
        if found is None:
            below = (
                None
                if row is not None or lower_dir is None
                else self.lower.lstat_or_none(lower_dir)
            )
            if below is not None and not stat.S_ISDIR(below.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {parent}")
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return found

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        found = self.tables.walk(path, follow=follow)  # upper entries all the way
        return self._shown(found if found is not None else super().resolve(path, follow=follow))

    def getattr(self, ino: int) -> Attr:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return self._shown(self.upper.getattr(ino))
        st = self.lower.lstat_or_none(self._ref(ino).path)
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return lower_attr(ino, st)

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self.copy_up(ino)
        return self.upper.setattr(ino, **fields)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        upper = ino < LOWER_INO_BASE or self._is_upper(ino)
        if upper:
            self.tables.directory(ino)
        elif not self.getattr(ino).is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {ino}")
        lower_dir = self._merged_lower(ino)
        listing = [] if lower_dir is None else self.lower.listdir(lower_dir)
        lower_names = {name for name, _ in listing}
        if offset < _UPPER_OFFSET:
            hidden: set[str] = set()
            if upper:
                hidden = self.tables.whiteouts(ino)
            for position, (name, st) in enumerate(listing[offset:], start=offset + 1):
                attr = self.tables.entry(ino, name) if upper else None
                if attr is None:
                    if name in hidden:
                        continue
                    attr = self._lower_object(ino, name, join(lower_dir or "", name), st)
                elif attr.is_file:
                    attr = self._shown(attr)
                yield name, attr, position
            offset = _UPPER_OFFSET
        if not upper:
            return
        for name, attr, entry_id in self.tables.entries(ino, offset - _UPPER_OFFSET):
            if name not in lower_names:
                yield name, self._shown(attr) if attr.is_file else attr, entry_id + _UPPER_OFFSET

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return self.upper.mkdir(parent, name, mode, uid, gid)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self.check_writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return self.upper.create(parent, name, mode, uid, gid)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return self.upper.symlink(parent, name, target, uid, gid)

    def mknod(
        self, parent: int, name: str, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0
    ) -> Attr:
        self.check_writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return self.upper.mknod(parent, name, mode, rdev, uid, gid)

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self.check_writable()
        with self.db.write():
            self.copy_up(ino)
            self.copy_up(new_parent)
            self._must_not_exist(new_parent, new_name)
            return self.upper.link(ino, new_parent, new_name)

    def open(self, ino: int, flags: int = 0) -> Handle:
        writes = flags & WRITE_FLAGS
        upper = ino < LOWER_INO_BASE or self._is_upper(ino)
        attr = self.tables.get(ino) if upper else self.getattr(ino)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
        if not attr.is_file:
            raise OSError(errno.EINVAL, "not a regular file", f"inode {ino}")
        if not upper and not writes:
            descriptor = self.lower.open(self._ref(ino).path, os.O_RDONLY)
            return LowerHandle(self, self.tables, ino, descriptor)
        if writes:
            self.copy_up(ino)  # or, for an upper file, rebase it
        handle = OverlayHandle(self, self.tables, ino, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC:
            handle.truncate(0)  # even at size 0: other handles may hold unflushed writes
        return handle

    def unlink(self, parent: int, name: str) -> None:
        self.check_writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            self.copy_up(parent)
            if self.tables.entry(parent, name) is not None:
                self.upper.unlink(parent, name)
            self._hide_lower(parent, name)

    def _merged_empty(self, ino: int) -> bool:
        return next(iter(self.readdir(ino)), None) is None

    def rmdir(self, parent: int, name: str) -> None:
        self.check_writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            if not attr.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
            if not self._merged_empty(attr.ino):
                raise OSError(errno.ENOTEMPTY, "Directory not empty", name)
            self.copy_up(parent)
            if self.tables.entry(parent, name) is not None:
                self.tables.remove_dir(parent, name, self.tables.get(attr.ino), time.time_ns())
            self._hide_lower(parent, name)

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self.check_writable()
        check_name(new_name)
        with self.db.write():
            source = self.lookup(parent, name)
            target = self.lookup_or_none(new_parent, new_name)
            if not check_rename(
                parent, source, new_parent, target, new_name, flags,
                contains=self._contains, is_empty=lambda d: self._merged_empty(d.ino),
            ):  # fmt: skip
                return
            self.copy_up(source.ino)
            self.copy_up(new_parent)
            if target is not None:
                self.copy_up(target.ino)
            self.upper.rename(parent, name, new_parent, new_name, flags)
            self._hide_lower(parent, name, replaced=bool(flags & RENAME_EXCHANGE))
            self._hide_lower(new_parent, new_name, replaced=True)

    def _contains(self, ancestor: int, ino: int) -> bool:
        """Whether directory ``ancestor`` is ``ino`` or contains it, in the merged tree."""
        while ino != ancestor:
            if ino == ROOT_INO:
                return False
            if ino < LOWER_INO_BASE or self._is_upper(ino):
                parent = self.db.value("SELECT parent FROM entries WHERE ino = ? LIMIT 1", (ino,))
                if parent is None:
                    return False
                ino = int(parent)
            else:
                ino = self._ref(ino).parent
        return True

    def readlink(self, ino: int) -> bytes:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return self.upper.readlink(ino)
        path = self._ref(ino).path
        if not stat.S_ISLNK(self.lower.lstat(path).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument: not a symlink", f"inode {ino}")
        return self.lower.readlink(path)

    # -- xattrs: lower objects have none until copied up -------------------------

    def getxattr(self, ino: int, name: bytes) -> bytes:
        if ino >= LOWER_INO_BASE and not self._is_upper(ino):
            self.getattr(ino)
            raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
        return self.upper.getxattr(ino, name)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self.copy_up(ino)
        self.upper.setxattr(ino, name, value, flags)

    def listxattr(self, ino: int) -> list[bytes]:
        if ino >= LOWER_INO_BASE and not self._is_upper(ino):
            self.getattr(ino)
            return []
        return self.upper.listxattr(ino)

    def removexattr(self, ino: int, name: bytes) -> None:
        self.copy_up(ino)
        self.upper.removexattr(ino, name)

    # -- content ----------------------------------------------------------------

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self.copy_up(parent)
        return self.upper.tmpfile(parent, mode)

    def _prepare_replace(self, parent: int, name: str) -> None:
        """Copy up what a whole-file replacement of ``parent/name`` changes."""
        self.copy_up(parent)
        existing = self.lookup_or_none(parent, name)
        if existing is not None:
            if existing.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            self.copy_up(existing.ino)

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self.check_writable()
        with self.db.write():
            self._prepare_replace(parent, name)
            attr = self.upper.publish(handle, parent, name)
            self._hide_lower(parent, name, replaced=True)
            return attr

    def read(self, ino: int, offset: int, size: int) -> bytes:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return self.upper.read(ino, offset, size)
        return self.lower.pread(self._ref(ino).path, offset, size)

    def read_file(self, path: str) -> bytes:
        # sqlite mode's one-statement fast path reads chunk rows only: fine for an
        # upper file, wrong for one whose bytes come partly from the lower tree.
        # Checked after the read: a file replaced in between was read whole, as
        # it was, and an upper file never gains lower bytes.
        small = self.tables.walk_small_file(path)
        if small is not None and self._layout(small[0].ino) is None:
            return small[1]
        # Through a handle: it keeps the file while another process replaces it.
        return super().read_file(path)

    def write_plain(
        self, path: str, data: bytes, mode: int = 0o644, *, exclusive: bool = False
    ) -> Attr | None:
        """sqlite mode's whole-file write, where the upper layer decides it alone;
        else None: the generic path copies up and whites out what it replaces."""
        return self.upper.write_plain(
            path, data, mode, exclusive=exclusive, accept=self._upper_decides_alone
        )

    def _upper_decides_alone(self, slot: Slot, name: str) -> bool:
        """Whether a whole-file write of ``name`` in ``slot`` (every directory on the
        way an upper one) changes the upper layer only: the name holds nothing or
        an upper file with no lower bytes, and nothing of the lower tree shows
        there (an opaque directory, a whiteout, or no lower entry)."""
        if slot.child is not None and self._layout(slot.child) is not None:
            return False
        lower_dir = self.tables.merged_dir(slot.parent)
        return (
            lower_dir is None
            or self.tables.hides(slot.parent, name)
            or self.lower.lstat_or_none(join(lower_dir, name)) is None
        )

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        self.check_writable()
        with self.db.write():
            self._prepare_replace(parent, name)
            attr = self.upper.write_file(parent, name, data, mode)
            self._hide_lower(parent, name, replaced=True)
            return attr

    def checksum(self, ino: int) -> str:
        if (ino < LOWER_INO_BASE or self._is_upper(ino)) and self._layout(ino) is None:
            return self.upper.checksum(ino)
        # The same checksum sqlite mode computes from chunk hashes, from the bytes.
        attr = self.getattr(ino)
        cs = self.chunk_size
        with self.open(ino) as handle:
            chunks = (
                (idx, handle.read(idx * cs, cs).rstrip(b"\0"))
                for idx in range((attr.size + cs - 1) // cs)
            )
            return content_checksum(
                attr.size, ((idx, chunk_hash(data)) for idx, data in chunks if data)
            )

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        if (ino < LOWER_INO_BASE or self._is_upper(ino)) and self._layout(ino) is None:
            self.check_writable()
            with self.db.write():  # shares chunks, copies no bytes
                self._prepare_replace(parent, name)
                attr = self.upper.copy_file(ino, parent, name)
                self._hide_lower(parent, name, replaced=True)
                return attr
        return super().copy_file(ino, parent, name)

    def statfs(self) -> StatFs:
        return self.upper.statfs()

    def reclaim_orphans(self) -> int:
        return self.upper.reclaim_orphans()

    def snapshot(self) -> contextlib.AbstractContextManager[object]:
        return self.upper.snapshot()

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.upper.transaction()

    def close(self) -> None:
        try:
            self.upper.close()
        finally:
            self.lower.close()


__all__ = ["LOWER_INO_BASE", "HybridBackend", "LowerHandle", "OverlayHandle"]
