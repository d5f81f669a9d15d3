"""Consistency checks of the file tables (sqlite mode, and hybrid's upper layer),
and the repairs that lose no user data, for ``vfs doctor``.

Each check returns what it found; each repair keeps whatever content is left:
a file that lost a chunk keeps its other bytes, is marked with the xattr
:data:`DAMAGED_XATTR` and is listed, never removed or silently emptied, and an
inode that lost its name is linked into ``/lost+found`` as fsck does.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from vfs.backends.base import ROOT_INO
from vfs.backends.chunks import ChunkStore
from vfs.backends.db import Database

DAMAGED_XATTR = b"user.agentvfs.damaged"
LOST_AND_FOUND = "lost+found"


@dataclass(frozen=True)
class Finding:
    """One problem: what kind, where, and whether a repair can fix it."""

    kind: str
    detail: str
    repairable: bool


class FileTablesCheck:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.chunks = ChunkStore(db)

    # -- where an inode is -------------------------------------------------------

    def path_of(self, ino: int) -> str:
        """A path of ``ino`` from the root, or ``#<ino>`` when it has no name."""
        names: list[str] = []
        seen = {ino}
        while ino != ROOT_INO:
            row = self.db.one("SELECT parent, name FROM entries WHERE ino = ? LIMIT 1", (ino,))
            if row is None:
                return "/".join(["#" + str(ino), *reversed(names)])
            ino, name = int(row[0]), str(row[1])
            names.append(name)
            if ino in seen:
                break  # a cycle: report what was walked
            seen.add(ino)
        return "/" + "/".join(reversed(names))

    def _holders(self, chunk_ids: set[int]) -> list[int]:
        if not chunk_ids:
            return []
        marks = ",".join("?" * len(chunk_ids))
        return [
            int(r[0])
            for r in self.db.query(
                f"SELECT DISTINCT ino FROM file_chunks WHERE chunk IN ({marks})", tuple(chunk_ids)
            )
        ]

    # -- checks ------------------------------------------------------------------

    def dangling_entries(self) -> list[tuple[int, str]]:
        """Entries that name an inode, or sit in a directory, that does not exist."""
        return [
            (int(r[0]), str(r[1]))
            for r in self.db.query(
                "SELECT id, name FROM entries WHERE ino NOT IN (SELECT ino FROM inodes)"
                " OR parent NOT IN (SELECT ino FROM inodes)"
            )
        ]

    def unnamed_inodes(self) -> list[int]:
        """Inodes that count names but have none (and are not open nameless files)."""
        return [
            int(r[0])
            for r in self.db.query(
                "SELECT ino FROM inodes WHERE ino != ? AND nlink > 0"
                " AND ino NOT IN (SELECT ino FROM entries) AND ino NOT IN (SELECT ino FROM orphans)",
                (ROOT_INO,),
            )
        ]

    def wrong_link_counts(self) -> list[tuple[int, int, int]]:
        """``(ino, nlink, names)`` of non-directories whose link count is wrong."""
        return [
            (int(r[0]), int(r[1]), int(r[2]))
            for r in self.db.query(
                "SELECT i.ino, i.nlink, count(e.id) FROM inodes i JOIN entries e ON e.ino = i.ino"
                " WHERE (i.mode & ?) != ? GROUP BY i.ino HAVING i.nlink != count(e.id)",
                (stat.S_IFMT(0o170000), stat.S_IFDIR),
            )
        ]

    def files_missing_chunks(self) -> list[int]:
        return sorted({int(r[0]) for r in self.db.query(
            "SELECT ino FROM file_chunks WHERE chunk NOT IN (SELECT id FROM chunks)"
        )})  # fmt: skip

    def files_with_damaged_chunks(self) -> tuple[list[int], list[int]]:
        """Chunks whose bytes no longer match their hash, and the files that use them."""
        damaged = list(self.chunks.damaged())
        return damaged, self._holders(set(damaged))

    def blob_problems(self) -> tuple[list[int], list[int]]:
        """Ids of chunks whose blob is missing from the store, and of those whose
        blob no longer hashes to its name (every blob is read)."""
        blobs = self.db.blobs
        missing, damaged = [], []
        state: dict[str, str] = {}  # a blob holds many chunks: check it once
        for chunk_id, key in self.chunks.blob_holders():
            if key not in state:
                if blobs is None or not blobs.exists(key):
                    state[key] = "missing"
                else:
                    state[key] = "damaged" if blobs.damaged(key) else "ok"
            if state[key] == "missing":
                missing.append(chunk_id)
            elif state[key] == "damaged":
                damaged.append(chunk_id)
        return missing, damaged

    def _blob_findings(self) -> list[Finding]:
        found = []
        missing, damaged = self.blob_problems()
        for kind, chunk_ids, repairable in (
            ("missing blob", missing, True),
            ("damaged blob", damaged, False),
        ):
            for ino in self._holders(set(chunk_ids)):
                found.append(Finding(kind, self.path_of(ino), repairable))
            for chunk_id in chunk_ids:
                if not self._holders({chunk_id}):
                    found.append(Finding(kind, f"chunk {chunk_id} (no file uses it)", False))
        return found

    def findings(self) -> list[Finding]:
        found = [Finding("integrity", p, False) for p in self.db.integrity_check()
                 if not p.startswith("foreign key")]  # fmt: skip
        for entry_id, name in self.dangling_entries():
            found.append(Finding("dangling entry", f"{name!r} (entry {entry_id})", True))
        for ino in self.unnamed_inodes():
            found.append(Finding("inode without a name", f"#{ino}", True))
        for ino, nlink, names in self.wrong_link_counts():
            found.append(
                Finding("link count", f"{self.path_of(ino)}: {nlink}, names {names}", True)
            )
        for ino in self.files_missing_chunks():
            found.append(Finding("missing chunk", self.path_of(ino), True))
        damaged, holders = self.files_with_damaged_chunks()
        for ino in holders:
            found.append(Finding("damaged chunk", self.path_of(ino), False))
        for chunk_id in damaged:
            if not self._holders({chunk_id}):
                found.append(Finding("damaged chunk", f"chunk {chunk_id} (no file uses it)", False))
        for chunk_id, stored, real in self.chunks.wrong_refs():
            what = "unreferenced chunk" if real == 0 else "reference count"
            found.append(Finding(what, f"chunk {chunk_id}: {stored}, referenced {real}", True))
        return found + self._blob_findings()

    # -- repairs -----------------------------------------------------------------

    def _mark(self, ino: int, reason: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)",
            (ino, DAMAGED_XATTR, reason.encode()),
        )

    def _lost_and_found(self) -> int:
        ino = self.db.value(
            "SELECT ino FROM entries WHERE parent = ? AND name = ?", (ROOT_INO, LOST_AND_FOUND)
        )
        if ino is not None:
            return int(ino)
        now = time.time_ns()
        ino = int(self.db.value(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_ino'"
            " RETURNING CAST(value AS INTEGER)"
        ))  # fmt: skip
        self.db.execute(
            "INSERT INTO inodes (ino, mode, nlink, uid, gid, atime_ns, mtime_ns, ctime_ns,"
            " btime_ns) VALUES (?, ?, 2, ?, ?, ?, ?, ?, ?)",
            (ino, stat.S_IFDIR | 0o700, os.getuid(), os.getgid(), now, now, now, now),
        )
        self.db.execute(
            "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)",
            (ROOT_INO, LOST_AND_FOUND, ino),
        )
        self.db.execute("UPDATE inodes SET nlink = nlink + 1 WHERE ino = ?", (ROOT_INO,))
        return ino

    def repair(self) -> list[str]:
        """Fix what can be fixed without losing data; returns what was done."""
        done: list[str] = []
        with self.db.write():
            for entry_id, name in self.dangling_entries():
                self.db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
                done.append(f"removed entry {name!r}, which named nothing")
            for ino in self.unnamed_inodes():
                folder = self._lost_and_found()
                self.db.execute(
                    "INSERT INTO entries (parent, name, ino) VALUES (?, ?, ?)",
                    (folder, f"#{ino}", ino),
                )
                if stat.S_ISDIR(
                    int(self.db.value("SELECT mode FROM inodes WHERE ino = ?", (ino,)))
                ):
                    self.db.execute("UPDATE inodes SET nlink = nlink + 1 WHERE ino = ?", (folder,))
                done.append(f"linked inode {ino} as /{LOST_AND_FOUND}/#{ino}")
            for ino, _nlink, names in self.wrong_link_counts():
                self.db.execute("UPDATE inodes SET nlink = ? WHERE ino = ?", (names, ino))
                done.append(f"set the link count of {self.path_of(ino)} to {names}")
            for ino in self.files_missing_chunks():
                self.db.execute(
                    "DELETE FROM file_chunks WHERE ino = ? AND chunk NOT IN (SELECT id FROM chunks)",
                    (ino,),
                )
                self._mark(ino, "lost chunks: those ranges now read as zeros")
                done.append(f"kept {self.path_of(ino)} without its lost chunks; marked damaged")
            _damaged, holders = self.files_with_damaged_chunks()
            for ino in holders:
                self._mark(ino, "a chunk's bytes do not match its hash")
            lost, bad = self.blob_problems()
            for ino in self._holders(set(lost)):
                marks = ",".join("?" * len(lost))
                self.db.execute(
                    f"DELETE FROM file_chunks WHERE ino = ? AND chunk IN ({marks})", (ino, *lost)
                )
                self._mark(ino, "lost blobs: those ranges now read as zeros")
                done.append(f"kept {self.path_of(ino)} without its lost blobs; marked damaged")
            for ino in self._holders(set(bad)):
                self._mark(ino, "a blob's bytes do not match its hash")
        fixed = self.chunks.fix_refs()
        if fixed:
            done.append(f"corrected {fixed} chunk reference counts")
        return done
