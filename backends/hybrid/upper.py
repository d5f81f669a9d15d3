"""hybrid mode's upper layer: the sqlite file tables, where a file copied up from
the lower tree reads its unchanged chunks from the lower file.

An upper file with a ``lower_path`` reads each chunk from its own
``file_chunks`` row if there is one, else from the lower file below
``lower_limit``: changing one byte of a huge file stores one chunk. A lower
file that is gone or no longer a regular file reads as zeros there.
"""

from __future__ import annotations

import os
import stat

from vfs.backends.base import ROOT_INO
from vfs.backends.chunks import CONTENT_COLUMNS
from vfs.backends.db import Database
from vfs.backends.hybrid.lower import LowerTree, read_at, tree_stamp
from vfs.backends.hybrid.nodes import LOWER_INO_BASE, Backing, Layout
from vfs.backends.sqlite.tables import BLOB_CHUNKS, FileTables

# A copied-up file's layers; rows only for files copied from a lower file.
_LAYOUT_SQL = (
    "SELECT lower_path, lower_limit, base_size, base_mtime_ns,"
    " (SELECT size FROM inodes WHERE ino = ?1), (SELECT mtime_ns FROM inodes WHERE ino = ?1),"
    " EXISTS (SELECT 1 FROM file_chunks WHERE ino = ?1)"
    " FROM overlay_nodes WHERE ino = ?1 AND lower_path IS NOT NULL AND base_hash IS NOT NULL"
)


_CONTENT = ", ".join("c." + column for column in CONTENT_COLUMNS.split(", "))


class OverlayTables(FileTables):
    """The file tables of a hybrid workspace: chunks may come from ``lower``."""

    def __init__(self, db: Database, lower: LowerTree, *, read_only: bool = False) -> None:
        self.lower = lower
        super().__init__(db, read_only=read_only)

    def touch_dir(self, ino: int, now: int, nlink_delta: int = 0) -> None:
        # Subdirectories that only exist below are not counted in an upper
        # directory's nlink, so removing one must not take it under 2.
        self.db.execute(
            "UPDATE inodes SET mtime_ns = ?, ctime_ns = ?, nlink = max(2, nlink + ?) WHERE ino = ?",
            (now, now, nlink_delta, ino),
        )

    # -- overlay rows -------------------------------------------------------------------

    def merge_root(self) -> None:
        """Make the root directory merge the whole lower tree (once, on first use)."""
        if self.db.value("SELECT 1 FROM overlay_nodes WHERE ino = ?", (ROOT_INO,)) is None:
            with self.db.write():
                self.db.execute(
                    "INSERT OR IGNORE INTO overlay_nodes (ino, lower_path) VALUES (?, '')",
                    (ROOT_INO,),
                )

    def merged_dir(self, ino: int, default: str | None = None) -> str | None:
        """The lower directory merged into upper directory ``ino``; None if it is
        opaque, ``default`` if it has no overlay row at all."""
        row = self.db.one("SELECT lower_path FROM overlay_nodes WHERE ino = ?", (ino,))
        return default if row is None else row[0]

    def copy_up(self, ino: int, parent: int, name: str, path: str) -> None:
        """Record lower object ``path`` as upper inode ``ino`` named ``parent/name``.

        Metadata only: a file keeps reading its bytes from the lower file, and
        its size, mtime and hash are recorded as the base commit checks against.
        """
        st = self.lower.lstat(path)
        base_hash = None
        target = None
        size = 0
        if stat.S_ISREG(st.st_mode):
            size = st.st_size
            base_hash = self.lower.content_hash(path)
        elif stat.S_ISLNK(st.st_mode):
            target = self.lower.readlink(path)
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
            (ino, path, size if base_hash else 0, st.st_size, st.st_mtime_ns, base_hash),
        )
        self.db.execute(
            "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)", (parent, name, ino)
        )

    def add_whiteout(self, parent: int, name: str, path: str, *, replaced: bool) -> None:
        """Hide lower object ``path``, entry ``name`` of upper directory ``parent``,
        if it exists.

        A replaced file records its hash and a directory a stamp of its whole
        tree, so commit can tell whether the disk changed since; a deleted
        file is checked by size and mtime only.
        """
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

    def hides(self, parent: int, name: str) -> bool:
        """Whether upper directory ``parent`` hides its lower entry ``name``."""
        return bool(
            self.db.value(
                "SELECT 1 FROM overlay_whiteouts WHERE parent = ? AND name = ?", (parent, name)
            )
        )

    def whiteouts(self, parent: int) -> set[str]:
        """The names of the lower entries upper directory ``parent`` hides."""
        rows = self.db.query("SELECT name FROM overlay_whiteouts WHERE parent = ?", (parent,))
        return {r[0] for r in rows}

    # -- where a file's bytes come from ---------------------------------------------

    def backing(self, ino: int) -> Backing | None:
        """The lower file under upper file ``ino`` and how much of it still shows."""
        row = self.db.one("SELECT lower_path, lower_limit FROM overlay_nodes WHERE ino = ?", (ino,))
        if row is None or row[0] is None or row[1] <= 0:
            return None
        return Backing(row[0], int(row[1]))

    def layout(self, ino: int) -> Layout | None:
        """Where the bytes of upper file ``ino`` come from; None when from chunk rows only."""
        if ino < LOWER_INO_BASE:
            return None  # only copy-up gives a file lower bytes, and it keeps a lower number
        row = self.db.one(_LAYOUT_SQL, (ino,))
        if row is None:
            return None
        path, limit, base_size, base_mtime_ns, size, mtime_ns, has_chunks = row
        if (
            limit == base_size == size
            and not has_chunks
            and not self.open_files.has_pending_writes(ino)
        ):
            st = self.lower.lstat_or_none(path)
            if st is not None and stat.S_ISREG(st.st_mode):
                shown_mtime = st.st_mtime_ns if mtime_ns == base_mtime_ns else mtime_ns
                return Layout(path, st.st_size, st.st_size, live=True, mtime_ns=shown_mtime)
        return Layout(path, limit, size) if limit > 0 else None

    def rebase(self, ino: int) -> bool:
        """Before the first change to the content of upper file ``ino``, take the
        lower file as it is now as its base: that is what the overlay showed.

        Returns whether anything was updated.
        """
        if ino < LOWER_INO_BASE:
            return False
        row = self.db.one(_LAYOUT_SQL, (ino,))
        if row is None or not row[1] == row[2] == row[4] or row[6]:
            return False
        with self.db.write():
            row = self.db.one(_LAYOUT_SQL, (ino,))
            if row is None:
                return False
            path, limit, base_size, base_mtime_ns, size, _mtime, has_chunks = row
            if not limit == base_size == size or has_chunks:
                return False
            st = self.lower.lstat_or_none(path)
            if st is None or not stat.S_ISREG(st.st_mode):
                return False
            if (st.st_size, st.st_mtime_ns) == (base_size, base_mtime_ns):
                return False
            self.db.execute(
                "UPDATE overlay_nodes SET lower_limit = ?1, base_size = ?1, base_mtime_ns = ?2,"
                " base_hash = ?3 WHERE ino = ?4",
                (st.st_size, st.st_mtime_ns, self.lower.content_hash(path), ino),
            )
            self.db.execute(
                "UPDATE inodes SET size = ?1, mtime_ns = CASE WHEN mtime_ns = ?2 THEN ?3"
                " ELSE mtime_ns END WHERE ino = ?4",
                (st.st_size, base_mtime_ns, st.st_mtime_ns, ino),
            )
            return True

    def fill_from_lower(self, ino: int) -> bool:
        """Copy the lower bytes upper file ``ino`` still shows into its own chunk rows,
        so that it no longer depends on the lower file; returns whether it did."""
        backing = self.backing(ino)
        if backing is None:
            return False
        cs = self.chunk_size
        with self.db.write():
            have = self.chunk_indexes(ino)
            missing = [i for i in range((backing.limit + cs - 1) // cs) if i not in have]
            for start in range(0, len(missing), BLOB_CHUNKS):  # a blob's worth at a time
                batch = {
                    idx: self.lower.pread(backing.path, idx * cs, min(cs, backing.limit - idx * cs))
                    for idx in missing[start : start + BLOB_CHUNKS]
                }
                # No lower bytes show after this: a chunk of zeros needs no row.
                self.store_chunks(ino, batch, keep_empty=False)
            self.db.execute("UPDATE overlay_nodes SET lower_limit = 0 WHERE ino = ?", (ino,))
        return True

    # -- content: upper chunks over lower bytes ------------------------------------

    def read(self, ino: int, offset: int, length: int) -> bytes:
        layout = self.layout(ino)
        if layout is None:
            return super().read(ino, offset, length)
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
        content = self.chunks.content
        rows = {
            row[0]: content(row[1:], where)
            for row in self.db.query(
                f"SELECT f.idx, {_CONTENT} FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
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

    def chunk(self, ino: int, idx: int) -> bytes:
        row = self.db.one(
            f"SELECT {_CONTENT} FROM file_chunks f JOIN chunks c ON c.id = f.chunk"
            " WHERE f.ino = ? AND f.idx = ?",
            (ino, idx),
        )
        if row is not None:
            return self.chunks.content(row, f"inode {ino}")
        backing = self.backing(ino)
        base = idx * self.chunk_size
        if backing is None or base >= backing.limit:
            return b""
        return self.lower.pread_file(backing.path, base, min(self.chunk_size, backing.limit - base))

    def store_chunk(self, ino: int, idx: int, data: bytes, *, spill: bool | None = None) -> None:
        backing = self.backing(ino)
        # Over lower bytes even an all-zero chunk needs a row, or the lower bytes show.
        over_lower = backing is not None and idx * self.chunk_size < backing.limit
        self.write_chunk(ino, idx, data, keep_empty=over_lower, spill=spill)

    def truncate(self, ino: int, old_size: int, size: int, now: int) -> None:
        if self.rebase(ino):
            old_size = self.size(ino)
        super().truncate(ino, old_size, size, now)
        self.db.execute(
            "UPDATE overlay_nodes SET lower_limit = min(lower_limit, ?) WHERE ino = ?", (size, ino)
        )
