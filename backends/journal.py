"""The change journal of an agent database: what each write did to the file
tables (sqlite mode, hybrid's upper layer), in commit order, with who wrote it.

Triggers fill it (``schema/agent/0005_change_journal.sql``), so every writer is
recorded: the mount, fsspec, the CLI, another process. Readers poll cheaply:
``PRAGMA data_version`` says whether anyone committed since the last look, and
only then are the rows past the reader's last sequence number fetched.

A *follower* is a named reader that records how far it has read; the journal
keeps everything a live follower has not read yet, and beyond that only the
newest :data:`KEEP` rows, so it stays bounded.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass

from vfs.backends.base import ROOT_INO
from vfs.backends.db import Database
from vfs.backends.host import pid_alive

KEEP = 100_000  # rows kept beyond what live followers still need
TRIM_EVERY = 1_000  # rows appended between trims a follower triggers


@dataclass(frozen=True, slots=True)
class Change:
    """One journal row. ``what`` is ``attr`` (attributes or content of ``ino``
    changed), ``link`` (``parent/name`` now names ``ino``), ``unlink`` (it no
    longer does) or ``free`` (``ino`` is gone)."""

    seq: int
    ino: int
    parent: int | None
    name: str | None
    what: str
    writer: str | None
    at_ns: int


class Journal:
    def __init__(self, db: Database) -> None:
        self.db = db

    def latest(self) -> int:
        """The sequence number of the newest change (0 for none)."""
        return int(self.db.value("SELECT coalesce(max(seq), 0) FROM journal"))

    def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Changes after ``seq``, oldest first, at most ``limit``."""
        return [
            Change(*row)
            for row in self.db.query(
                "SELECT seq, ino, parent, name, what, writer, at_ns FROM journal"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
        ]

    def oldest(self) -> int:
        """The sequence number before the oldest change still kept."""
        return int(self.db.value("SELECT coalesce(min(seq), 1) - 1 FROM journal"))

    def trim(self) -> int:
        """Drop what every live follower has read, keeping the newest :data:`KEEP`
        rows; forgets followers whose process is gone. Returns rows dropped."""
        with self.db.write():
            needed = None
            for name, seq, pid in self.db.query("SELECT name, seq, pid FROM journal_followers"):
                if pid_alive(int(pid)):
                    needed = seq if needed is None else min(needed, seq)
                else:
                    self.db.execute("DELETE FROM journal_followers WHERE name = ?", (name,))
            limit = self.latest() - KEEP
            if needed is not None:
                limit = min(limit, needed)
            self.db.execute("DELETE FROM journal WHERE seq <= ?", (limit,))
            return int(self.db.conn.changes())

    def path_of(self, ino: int) -> str | None:
        """A path of ``ino`` now, or None when it has no name (any more)."""
        names: list[str] = []
        for _ in range(4096):  # deeper than any path a workspace allows
            if ino == ROOT_INO:
                return "/" + "/".join(reversed(names))
            row = self.db.one("SELECT parent, name FROM entries WHERE ino = ? LIMIT 1", (ino,))
            if row is None:
                return None
            ino = int(row[0])
            names.append(str(row[1]))
        return None

    def is_dir(self, ino: int) -> bool:
        mode = self.db.value("SELECT mode FROM inodes WHERE ino = ?", (ino,))
        return mode is not None and stat.S_ISDIR(int(mode))

    def follower(self, name: str, *, start: int | None = None) -> Follower:
        """A named reader that starts after ``start`` (default: now)."""
        return Follower(self, name, self.latest() if start is None else start)


class Follower:
    """Reads the journal in order and records how far, so the rows it still
    needs are kept and the ones it read can go."""

    def __init__(self, journal: Journal, name: str, seq: int) -> None:
        self.journal = journal
        self.name = name
        self.seq = seq
        self._seen: tuple[int, int] | None = None
        self._since_trim = 0
        self._record()

    def _record(self) -> None:
        with self.journal.db.write():
            self.journal.db.execute(
                "INSERT INTO journal_followers (name, seq, pid, seen_ns) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, pid = excluded.pid,"
                " seen_ns = excluded.seen_ns",
                (self.name, self.seq, os.getpid(), time.time_ns()),
            )

    @property
    def missed(self) -> bool:
        """True when rows it had not read were trimmed (it fell too far behind):
        the follower must then treat everything as changed."""
        return self.journal.oldest() > self.seq

    def poll(self) -> list[Change]:
        """Changes committed since the last poll; cheap when there are none."""
        # data_version moves when another connection commits, total_changes when
        # this one writes: unchanged both, nothing new can be in the journal.
        db = self.journal.db
        seen = (db.data_version(), db.conn.total_changes())
        if seen == self._seen:
            return []
        self._seen = seen
        changes: list[Change] = []
        while batch := self.journal.since(self.seq):
            changes += batch
            self.seq = batch[-1].seq
        if changes:
            self._record()
            self._since_trim += len(changes)
            if self._since_trim >= TRIM_EVERY:
                self._since_trim = 0
                self.journal.trim()
        return changes

    def __iter__(self) -> Iterator[Change]:
        yield from self.poll()

    def close(self) -> None:
        with self.journal.db.write():
            self.journal.db.execute("DELETE FROM journal_followers WHERE name = ?", (self.name,))
