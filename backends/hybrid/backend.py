"""hybrid mode: a copy-on-write overlay of the agent's disk tree.

The disk directory is the read-only *lower* layer; every change is stored in
the agent database, in the sqlite-mode tables (the *upper* layer), so this
backend is a :class:`SqliteBackend` that also looks through to the lower tree.

- Objects only in the lower tree get a synthetic inode number,
  ``LOWER_INO_BASE | st_ino``, which no upper inode uses (upper inodes are
  numbered below the base). Copying an object up keeps its number. A disk
  object whose natural number belongs to an upper inode copied from another
  path (a freed inode number reused, a file moved on disk), or that lives on
  another device, gets a number hashed from device, inode and path instead.
- An upper directory with an ``overlay_nodes.lower_path`` merges that lower
  directory's entries (minus whiteouts); without one it is opaque.
- An upper file with a ``lower_path`` reads each chunk from its own
  ``file_chunks`` row if there is one, else from the lower file below
  ``lower_limit``: changing one byte of a huge file stores one chunk. A lower
  file that is gone or no longer a regular file reads as zeros there.
- Opening or reading a lower file copies nothing; the first change copies the
  object's metadata up (and its ancestors'), recording the lower file's size,
  mtime and hash for conflict checks at commit. Until its content changes, the
  upper file shows the lower file as it is now; the first content change
  records the lower file as it is then instead.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import xxhash

from vfs.backends.base import ROOT_INO, Attr, Backend, Handle
from vfs.backends.chunks import verified
from vfs.backends.db import Database
from vfs.backends.host import join
from vfs.backends.hybrid.diff import tree_stamp
from vfs.backends.hybrid.lower import LowerTree, read_at
from vfs.backends.hybrid.nodes import (
    LOWER_INO_BASE,
    Backing,
    Layout,
    LowerHandle,
    LowerNumbers,
    LowerRef,
    OverlayHandle,
    file_layout,
    lower_attr,
    rebase_file,
)
from vfs.backends.names import check_name
from vfs.backends.sqlite.backend import RENAME_EXCHANGE, SqliteBackend

# readdir offsets: lower entries by sorted position below this, upper entries above.
_UPPER_OFFSET = 1 << 48


class HybridBackend(SqliteBackend):
    """An overlay: reads fall through to ``lower``; changes go to the database."""

    mode = "hybrid"

    def __init__(self, db: Database, lower: Path, *, read_only: bool = False) -> None:
        self.lower = LowerTree(lower)
        self.numbers = LowerNumbers(db, self.lower)
        self._refs: dict[int, LowerRef] = {}
        super().__init__(db, read_only=read_only)
        if (
            not read_only
            and self.db.value("SELECT 1 FROM overlay_nodes WHERE ino = ?", (ROOT_INO,)) is None
        ):
            with self.db.write():
                self.db.execute(
                    "INSERT OR IGNORE INTO overlay_nodes (ino, lower_path) VALUES (?, '')",
                    (ROOT_INO,),
                )

    # -- the two layers ----------------------------------------------------

    def _is_upper(self, ino: int) -> bool:
        return self.db.value("SELECT 1 FROM inodes WHERE ino = ?", (ino,)) is not None

    def _merged_lower(self, ino: int) -> str | None:
        """The lower directory merged into directory ``ino``, if any."""
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            row = self.db.one("SELECT lower_path FROM overlay_nodes WHERE ino = ?", (ino,))
            if row is None and ino == ROOT_INO and self.read_only:
                return ""
            return None if row is None else row[0]
        return self._ref(ino).path

    def _ref(self, ino: int) -> LowerRef:
        ref = self._refs.get(ino)
        if ref is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return ref

    def _whiteout(self, parent: int, name: str) -> bool:
        return bool(
            self.db.value(
                "SELECT 1 FROM overlay_whiteouts WHERE parent = ? AND name = ?", (parent, name)
            )
        )

    def _lower_child(self, parent: int, lower_dir: str, name: str) -> Attr | None:
        path = join(lower_dir, name)
        st = self.lower.lstat_or_none(path)
        return None if st is None else self._lower_object(parent, name, path, st)

    def _lower_object(self, parent: int, name: str, path: str, st: os.stat_result) -> Attr:
        """The attributes of lower object ``st`` at ``path``, numbered as it was before."""
        ino, upper = self.numbers.identify(st, path)
        self._refs[ino] = LowerRef(parent, name, path)
        return lower_attr(ino, st) if upper is None else self._shown(upper)

    def backing(self, ino: int) -> Backing | None:
        row = self.db.one("SELECT lower_path, lower_limit FROM overlay_nodes WHERE ino = ?", (ino,))
        if row is None or row[0] is None or row[1] <= 0:
            return None
        return Backing(row[0], int(row[1]))

    def _layout(self, ino: int) -> Layout | None:
        return file_layout(self, ino)

    def _shown(self, attr: Attr) -> Attr:
        """``attr`` as the overlay shows it: a file whose content never changed is
        the lower file as it is now, not as it was when copied up."""
        layout = self._layout(attr.ino) if attr.is_file else None
        if layout is None or not layout.live:
            return attr
        return attr.with_(size=layout.size, mtime_ns=layout.mtime_ns or attr.mtime_ns)

    def rebase(self, ino: int) -> bool:
        """Before the first change to the content of upper file ``ino``, take the
        lower file as it is now as its base: that is what the overlay showed."""
        return rebase_file(self, ino)

    # -- copy-up -----------------------------------------------------------

    def copy_up(self, ino: int) -> None:
        """Make ``ino`` (and its ancestors) upper objects; copies metadata, never content."""
        self._writable()
        if self._is_upper(ino):
            self.rebase(ino)
            return
        with self.db.write():
            if self._is_upper(ino):
                return
            ref = self._ref(ino)
            self.copy_up(ref.parent)
            st = self.lower.lstat(ref.path)
            base_hash = None
            target = None
            size = 0
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
                base_hash = self.lower.content_hash(ref.path)
            elif stat.S_ISLNK(st.st_mode):
                target = self.lower.readlink(ref.path)
                size = len(target)
            nlink = st.st_nlink if stat.S_ISDIR(st.st_mode) else 1
            self.db.execute(
                "INSERT INTO inodes (ino, mode, nlink, uid, gid, size, rdev, atime_ns, mtime_ns,"
                " ctime_ns, btime_ns, target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ino, st.st_mode, nlink, st.st_uid, st.st_gid, size, st.st_rdev,
                    st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_ctime_ns, target,
                ),
            )  # fmt: skip
            self.db.execute(
                "INSERT INTO overlay_nodes (ino, lower_path, lower_limit, base_size,"
                " base_mtime_ns, base_hash) VALUES (?, ?, ?, ?, ?, ?)",
                (ino, ref.path, size if base_hash else 0, st.st_size, st.st_mtime_ns, base_hash),
            )
            self.db.execute(
                "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)",
                (ref.parent, ref.name, ino),
            )

    def _hide_lower(self, parent: int, name: str, *, replaced: bool = False) -> None:
        """Whiteout the lower entry ``name`` of upper directory ``parent``, if there is one.

        A replaced file records its hash and a directory a stamp of its whole
        tree, so commit can tell whether the disk changed since; a deleted
        file is checked by size and mtime only.
        """
        lower_dir = self._merged_lower(parent)
        if lower_dir is None:
            return
        path = join(lower_dir, name)
        st = self.lower.lstat_or_none(path)
        if st is None:
            return
        digest = None
        if stat.S_ISDIR(st.st_mode):
            # Commit removes the whole tree: it must be able to tell whether
            # anything inside changed on disk since the overlay deleted it.
            digest = tree_stamp(self.lower, path)
        elif replaced and stat.S_ISREG(st.st_mode):
            digest = self.lower.content_hash(path)
        self.db.execute(
            "INSERT OR IGNORE INTO overlay_whiteouts (parent, name, base_size, base_mtime_ns,"
            " base_hash) VALUES (?, ?, ?, ?, ?)",
            (parent, name, st.st_size, st.st_mtime_ns, digest),
        )

    def _touch_dir(self, ino: int, now: int, nlink_delta: int = 0) -> None:
        # Subdirectories that only exist below are not counted in an upper
        # directory's nlink, so removing one must not take it under 2.
        self.db.execute(
            "UPDATE inodes SET mtime_ns = ?, ctime_ns = ?, nlink = max(2, nlink + ?) WHERE ino = ?",
            (now, now, nlink_delta, ino),
        )

    def _must_not_exist(self, parent: int, name: str) -> None:
        check_name(name)
        if self.lookup_or_none(parent, name) is not None:
            raise FileExistsError(errno.EEXIST, "File exists", name)

    # -- inode operations ----------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        attr = self._entry(parent, name)
        if attr is not None:
            return self._shown(attr)
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
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return found

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        return self._shown(super().resolve(path, follow=follow))

    def getattr(self, ino: int) -> Attr:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return self._shown(super().getattr(ino))
        st = self.lower.lstat_or_none(self._ref(ino).path)
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
        return lower_attr(ino, st)

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self.copy_up(ino)
        return super().setattr(ino, **fields)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        upper = ino < LOWER_INO_BASE or self._is_upper(ino)
        if upper:
            self._dir(ino)
        elif not self.getattr(ino).is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"inode {ino}")
        lower_dir = self._merged_lower(ino)
        listing = [] if lower_dir is None else self.lower.listdir(lower_dir)
        lower_names = {name for name, _ in listing}
        if offset < _UPPER_OFFSET:
            hidden: set[str] = set()
            if upper:
                hidden = {
                    r[0]
                    for r in self.db.query(
                        "SELECT name FROM overlay_whiteouts WHERE parent = ?", (ino,)
                    )
                }
            for position, (name, st) in enumerate(listing[offset:], start=offset + 1):
                attr = self._entry(ino, name) if upper else None
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
        for name, attr, entry_id in super().readdir(ino, offset - _UPPER_OFFSET):
            if name not in lower_names:
                yield name, self._shown(attr) if attr.is_file else attr, entry_id + _UPPER_OFFSET

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self._writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return super().mkdir(parent, name, mode, uid, gid)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self._writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return super().create(parent, name, mode, uid, gid)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self._writable()
        with self.db.write():
            self.copy_up(parent)
            self._must_not_exist(parent, name)
            return super().symlink(parent, name, target, uid, gid)

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self._writable()
        with self.db.write():
            self.copy_up(ino)
            self.copy_up(new_parent)
            self._must_not_exist(new_parent, new_name)
            return super().link(ino, new_parent, new_name)

    def open(self, ino: int, flags: int = 0) -> Handle:
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        upper = ino < LOWER_INO_BASE or self._is_upper(ino)
        attr = self._get(ino) if upper else self.getattr(ino)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", f"inode {ino}")
        if not attr.is_file:
            raise OSError(errno.EINVAL, "not a regular file", f"inode {ino}")
        if not upper and not writes:
            return LowerHandle(self, ino, self.lower.open(self._ref(ino).path, os.O_RDONLY))
        if writes:
            self.copy_up(ino)  # or, for an upper file, rebase it
        handle = OverlayHandle(self, ino, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC:
            handle.truncate(0)  # even at size 0: other handles may hold unflushed writes
        return handle

    def unlink(self, parent: int, name: str) -> None:
        self._writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            self.copy_up(parent)
            if self._entry(parent, name) is not None:
                super().unlink(parent, name)
            self._hide_lower(parent, name)

    def _merged_empty(self, ino: int) -> bool:
        return next(iter(self.readdir(ino)), None) is None

    def rmdir(self, parent: int, name: str) -> None:
        self._writable()
        with self.db.write():
            attr = self.lookup(parent, name)
            if not attr.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
            if not self._merged_empty(attr.ino):
                raise OSError(errno.ENOTEMPTY, "Directory not empty", name)
            self.copy_up(parent)
            if self._entry(parent, name) is not None:
                self._remove_dir(parent, name, self._get(attr.ino), time.time_ns())
            self._hide_lower(parent, name)

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self._writable()
        check_name(new_name)
        with self.db.write():
            source = self.lookup(parent, name)
            target = self.lookup_or_none(new_parent, new_name)
            if target is not None and target.ino == source.ino:
                return
            if target is not None and not flags & RENAME_EXCHANGE:
                if source.is_dir and not target.is_dir:
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", new_name)
                if target.is_dir and not source.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", new_name)
                if target.is_dir and not self._merged_empty(target.ino):
                    raise OSError(errno.ENOTEMPTY, "Directory not empty", new_name)
            self.copy_up(source.ino)
            self.copy_up(new_parent)
            if target is not None:
                self.copy_up(target.ino)
            super().rename(parent, name, new_parent, new_name, flags)
            self._hide_lower(parent, name, replaced=bool(flags & RENAME_EXCHANGE))
            self._hide_lower(new_parent, new_name, replaced=True)

    def readlink(self, ino: int) -> bytes:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return super().readlink(ino)
        path = self._ref(ino).path
        if not stat.S_ISLNK(self.lower.lstat(path).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument: not a symlink", f"inode {ino}")
        return self.lower.readlink(path)

    # -- xattrs: lower objects have none until copied up -------------------------

    def getxattr(self, ino: int, name: bytes) -> bytes:
        if ino >= LOWER_INO_BASE and not self._is_upper(ino):
            self.getattr(ino)
            raise OSError(errno.ENODATA, "No data available", name.decode(errors="replace"))
        return super().getxattr(ino, name)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self.copy_up(ino)
        super().setxattr(ino, name, value, flags)

    def listxattr(self, ino: int) -> list[bytes]:
        if ino >= LOWER_INO_BASE and not self._is_upper(ino):
            self.getattr(ino)
            return []
        return super().listxattr(ino)

    def removexattr(self, ino: int, name: bytes) -> None:
        self.copy_up(ino)
        super().removexattr(ino, name)

    # -- content: upper chunks over lower bytes ------------------------------------

    def _read(self, ino: int, offset: int, length: int) -> bytes:
        layout = self._layout(ino)
        if layout is None:
            return super()._read(ino, offset, length)
        end = min(layout.size, offset + length)
        if offset >= end:
            return b""
        if layout.live:
            return self.lower.pread_file(layout.path, offset, end - offset).ljust(
                end - offset, b"\0"
            )
        out = bytearray(end - offset)
        cs = self.chunk_size
        where = f"inode {ino}"
        rows = {
            idx: verified(data, digest, where)
            for idx, data, digest in self.db.query(
                "SELECT f.idx, c.data, c.hash FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
                " WHERE f.ino = ? AND f.idx BETWEEN ? AND ?",
                (ino, offset // cs, (end - 1) // cs),
            )
        }
        # Lower bytes show only in chunks the overlay never wrote.
        lower_end = min(end, layout.limit)
        gaps: list[tuple[int, int]] = []
        idx = offset // cs
        while idx * cs < lower_end:
            if idx in rows:
                idx += 1
                continue
            first = idx
            while idx * cs < lower_end and idx not in rows:
                idx += 1
            gaps.append((max(offset, first * cs), min(lower_end, idx * cs)))
        descriptor = self.lower.open_file_or_none(layout.path) if gaps else None
        if descriptor is not None:
            try:
                for lo, hi in gaps:
                    data = read_at(descriptor, lo, hi - lo)
                    out[lo - offset : lo - offset + len(data)] = data
            finally:
                os.close(descriptor)
        for idx, data in rows.items():
            base = idx * cs
            lo, hi = max(offset, base), min(end, base + cs)
            chunk = bytes(data).ljust(cs, b"\0")
            out[lo - offset : hi - offset] = chunk[lo - base : hi - base]
        return bytes(out)

    def _chunk(self, ino: int, idx: int) -> bytes:
        row = self.db.one(
            "SELECT c.data, c.hash FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
            " WHERE f.ino = ? AND f.idx = ?",
            (ino, idx),
        )
        if row is not None:
            return verified(bytes(row[0]), row[1], f"inode {ino}")
        backing = self.backing(ino)
        base = idx * self.chunk_size
        if backing is None or base >= backing.limit:
            return b""
        return self.lower.pread_file(backing.path, base, min(self.chunk_size, backing.limit - base))

    def _store_chunk(self, ino: int, idx: int, data: bytes) -> None:
        backing = self.backing(ino)
        if backing is None or idx * self.chunk_size >= backing.limit:
            super()._store_chunk(ino, idx, data)
            return
        # Over lower bytes even an all-zero chunk needs a row, or the lower bytes show.
        chunk = self.chunks.put(data.rstrip(b"\0"))
        self.db.execute(
            "INSERT INTO file_chunks (ino, idx, chunk) VALUES (?, ?, ?)"
            " ON CONFLICT (ino, idx) DO UPDATE SET chunk = excluded.chunk",
            (ino, idx, chunk),
        )

    def _truncate(self, ino: int, old_size: int, size: int, now: int) -> None:
        if self.rebase(ino):
            old_size = int(self.db.value("SELECT size FROM inodes WHERE ino = ?", (ino,)))
        super()._truncate(ino, old_size, size, now)
        self.db.execute(
            "UPDATE overlay_nodes SET lower_limit = min(lower_limit, ?) WHERE ino = ?", (size, ino)
        )

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self.copy_up(parent)
        return super().tmpfile(parent, mode)

    def _prepare_replace(self, parent: int, name: str) -> None:
        """Copy up what a whole-file replacement of ``parent/name`` changes."""
        self.copy_up(parent)
        existing = self.lookup_or_none(parent, name)
        if existing is not None:
            if existing.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
            self.copy_up(existing.ino)

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self._writable()
        with self.db.write():
            self._prepare_replace(parent, name)
            attr = super().publish(handle, parent, name)
            self._hide_lower(parent, name, replaced=True)
            return attr

    def read(self, ino: int, offset: int, size: int) -> bytes:
        if ino < LOWER_INO_BASE or self._is_upper(ino):
            return super().read(ino, offset, size)
        return self.lower.pread(self._ref(ino).path, offset, size)

    def read_file(self, path: str) -> bytes:
        # sqlite mode's one-statement fast path reads chunk rows only: fine for an
        # upper file, wrong for one whose bytes come partly from the lower tree.
        row = self._walk(path, True, with_data=False)
        if row is not None and self._layout(row[0]) is None:
            return super().read_file(path)
        attr = (
            self._shown(Attr(*row)) if row is not None else Backend.resolve(self, path, follow=True)
        )
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not attr.is_file:  # opening a lower FIFO would block
            raise OSError(errno.EINVAL, "not a regular file", path)
        return self.read(attr.ino, 0, attr.size)

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        self._writable()
        with self.db.write():
            self._prepare_replace(parent, name)
            attr = super().write_file(parent, name, data, mode)
            self._hide_lower(parent, name, replaced=True)
            return attr

    def checksum(self, ino: int) -> str:
        if (ino < LOWER_INO_BASE or self._is_upper(ino)) and self._layout(ino) is None:
            return super().checksum(ino)
        # The same digest sqlite mode computes from chunk hashes, from the bytes.
        attr = self.getattr(ino)
        digest = xxhash.xxh3_128()
        digest.update(f"{attr.size}:".encode())
        with self.open(ino) as handle:
            for idx in range((attr.size + self.chunk_size - 1) // self.chunk_size):
                data = handle.read(idx * self.chunk_size, self.chunk_size).rstrip(b"\0")
                if data:
                    digest.update(idx.to_bytes(8, "little") + xxhash.xxh3_128_digest(data))
        return digest.hexdigest()

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        if (ino < LOWER_INO_BASE or self._is_upper(ino)) and self._layout(ino) is None:
            return super().copy_file(ino, parent, name)  # shares chunks, copies no bytes
        return Backend.copy_file(self, ino, parent, name)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lower.close()


__all__ = ["LOWER_INO_BASE", "HybridBackend", "LowerHandle"]
