"""Transcripts: append-only events per session, linked into a tree by ``parent_id``.

An append with no parent follows the session's head: the event last added by
``append``, or, in a session nothing was appended to yet, its latest event. The
head is read and the event inserted in one ``BEGIN IMMEDIATE`` transaction, so
appends from any number of processes form a single chain, and an import that
adds older events later never moves it. An idempotency key that was seen
before returns the event it added instead of adding another.
"""

from __future__ import annotations

import errno
import itertools
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import xxhash

from vfs.backends.db import Database


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One transcript event; ``event`` is the JSON object as stored."""

    seq: int
    session_id: str
    id: str
    parent_id: str | None
    type: str | None
    idempotency_key: str | None
    event: dict[str, Any]
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class ImportedEntry:
    """A line for :meth:`Transcripts.import_entries`: stored as given, keyed by ``id``."""

    id: str
    parent_id: str | None
    event: Any
    idempotency_key: str | None = None
    line: int | None = None  # where it came from, for the caller's messages


@dataclass
class ImportOutcome:
    """What :meth:`Transcripts.import_entries` did."""

    added: int = 0
    kept: int = 0  # already in the session (or repeated exactly), left as it was
    conflicts: int = 0  # an id given twice with different content: the later one not stored
    first_conflicts: list[ImportedEntry] = field(default_factory=list)  # at most MAX_LISTED


MAX_LISTED = 20
# Entries per write transaction: bounds the lock hold time and the WAL growth
# of a large import, which is idempotent and so safe to commit in parts.
IMPORT_BATCH = 2000


_EVENT_COLUMNS = "seq, session_id, id, parent_id, type, idempotency_key, event, created_at"


def _event(row: Any) -> Event:
    seq, session_id, event_id, parent_id, kind, key, event, created = row
    return Event(seq, session_id, event_id, parent_id, kind, key, json.loads(event), created)


class Transcripts:
    """The transcripts of one agent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _ensure_session(self, session_id: str) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("a transcript session id is a non-empty string")
        self.db.execute(
            "INSERT OR IGNORE INTO transcripts (session_id, created_at) VALUES (?, ?)",
            (session_id, time.time()),
        )

    def _by_key(self, session_id: str, key: str) -> str | None:
        found = self.db.value(
            "SELECT id FROM transcript_events WHERE session_id = ? AND idempotency_key = ?",
            (session_id, key),
        )
        return None if found is None else str(found)

    def append(
        self,
        session_id: str,
        event: Mapping[str, Any],
        *,
        parent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Add ``event`` and return its id.

        With no ``parent_id`` the event follows the session's head. The stored
        event gets ``id`` (``event["id"]`` if given, else a new one),
        ``parentId`` and, if missing, an ISO ``timestamp``.
        """
        if not isinstance(event, Mapping):
            raise ValueError("a transcript event is a JSON object")
        stored = dict(event)
        event_id = stored.get("id") or uuid.uuid4().hex
        if not isinstance(event_id, str):
            raise ValueError("an event id is a string")
        stored.setdefault("timestamp", iso_now())
        with self.db.write():
            if idempotency_key is not None:
                existing = self._by_key(session_id, idempotency_key)
                if existing is not None:
                    return existing
            self._ensure_session(session_id)
            if parent_id is None:
                parent_id = self.head(session_id)
            elif self.get(session_id, parent_id) is None:
                raise FileNotFoundError(
                    errno.ENOENT, f"no event {parent_id} in session {session_id}", parent_id
                )
            stored["id"] = event_id
            stored["parentId"] = parent_id
            self.db.execute(
                "INSERT INTO transcript_events (session_id, id, parent_id, type, idempotency_key,"
                " event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, event_id, parent_id, _type_of(stored), idempotency_key,
                 _dumps(stored), time.time()),
            )  # fmt: skip
            self.db.execute(
                "UPDATE transcripts SET appended_seq = ? WHERE session_id = ?",
                (self.db.conn.last_insert_rowid(), session_id),
            )
        return event_id

    def import_entries(
        self, session_id: str, entries: Iterable[ImportedEntry], header: Any = None
    ) -> ImportOutcome:
        """Store entries exactly as given, in order, reading ``entries`` lazily.

        An entry whose id (or idempotency key) the session has is kept as it
        is. An id that ``entries`` gives twice with different content is a
        conflict: the later entry is not stored and is counted (and listed, up
        to ``MAX_LISTED``) in the outcome. ``header`` is stored if the session
        has none. Imported events never move the head of a session that
        ``append`` wrote to. Entries are committed in batches of
        ``IMPORT_BATCH``, so memory stays bounded whatever their number; inside
        the caller's transaction they are savepoints of it.
        """
        outcome = ImportOutcome()
        with self.db.write():
            self._ensure_session(session_id)
            if header is not None:
                self.db.execute(
                    "UPDATE transcripts SET header = ? WHERE session_id = ? AND header IS NULL",
                    (_dumps(header), session_id),
                )
            # The ids seen so far, in a temporary table (on disk, per connection)
            # rather than in memory: a transcript may have millions of lines.
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS import_seen"
                " (id TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID"
            )
            self.db.execute("DELETE FROM temp.import_seen")
        try:
            stream = iter(entries)
            while batch := list(itertools.islice(stream, IMPORT_BATCH)):
                with self.db.write():
                    for entry in batch:
                        self._import_one(session_id, entry, outcome)
        finally:
            with self.db.write():
                self.db.execute("DELETE FROM temp.import_seen")
        return outcome

    def _import_one(self, session_id: str, entry: ImportedEntry, outcome: ImportOutcome) -> None:
        text = _dumps(entry.event)
        # Key order is not content: two spellings of one object are one entry.
        digest = xxhash.xxh3_128_digest(json.dumps(entry.event, sort_keys=True).encode())
        seen = self.db.value("SELECT digest FROM temp.import_seen WHERE id = ?", (entry.id,))
        if seen is None:
            self.db.execute(
                "INSERT INTO temp.import_seen (id, digest) VALUES (?, ?)", (entry.id, digest)
            )
        elif seen != digest:
            outcome.conflicts += 1
            if len(outcome.first_conflicts) < MAX_LISTED:
                outcome.first_conflicts.append(entry)
            return
        self.db.execute(
            "INSERT INTO transcript_events (session_id, id, parent_id, type, idempotency_key,"
            " event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (session_id, entry.id, entry.parent_id, _type_of(entry.event),
             entry.idempotency_key, text, time.time()),
        )  # fmt: skip
        if self.db.conn.changes():
            outcome.added += 1
        elif self.db.value(
            "SELECT 1 FROM transcript_events WHERE session_id = ? AND id = ?",
            (session_id, entry.id),
        ):
            outcome.kept += 1
        else:  # its idempotency key belongs to another event: it is not in the session
            outcome.conflicts += 1
            if len(outcome.first_conflicts) < MAX_LISTED:
                outcome.first_conflicts.append(entry)

    def head(self, session_id: str) -> str | None:
        """The id of the event last appended, else (an imported session) the latest event."""
        found = self.db.value(
            "SELECT id FROM transcript_events WHERE seq = coalesce("
            " (SELECT appended_seq FROM transcripts WHERE session_id = ?),"
            " (SELECT max(seq) FROM transcript_events WHERE session_id = ?))",
            (session_id, session_id),
        )
        return None if found is None else str(found)

    def get(self, session_id: str, event_id: str) -> Event | None:
        row = self.db.one(
            f"SELECT {_EVENT_COLUMNS} FROM transcript_events WHERE session_id = ? AND id = ?",
            (session_id, event_id),
        )
        return None if row is None else _event(row)

    def events(self, session_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """Events in append order; ``after`` is a ``seq`` to continue from."""
        rows = self.db.query(
            f"SELECT {_EVENT_COLUMNS} FROM transcript_events WHERE session_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (session_id, after, -1 if limit is None else limit),
        )
        return [_event(r) for r in rows]

    def branch(self, session_id: str, leaf_id: str | None = None) -> list[Event]:
        """The events from the root to ``leaf_id`` (default: the head), following parents."""
        leaf = leaf_id if leaf_id is not None else self.head(session_id)
        if leaf is None:
            return []
        with self.db.read():
            if self.get(session_id, leaf) is None:
                raise FileNotFoundError(
                    errno.ENOENT, f"no event {leaf} in session {session_id}", leaf
                )
            # The depth bound stops a cycle in imported data from looping forever.
            rows = self.db.query(
                "WITH RECURSIVE chain(id, depth) AS ("
                "  SELECT ?, 0"
                "  UNION ALL"
                "  SELECT e.parent_id, c.depth + 1 FROM chain c JOIN transcript_events e"
                "   ON e.session_id = ? AND e.id = c.id"
                "  WHERE e.parent_id IS NOT NULL AND c.depth <"
                "   (SELECT COUNT(*) FROM transcript_events WHERE session_id = ?))"
                f" SELECT {', '.join('e.' + c.strip() for c in _EVENT_COLUMNS.split(','))}"
                " FROM chain c JOIN transcript_events e ON e.session_id = ? AND e.id = c.id"
                " ORDER BY c.depth DESC",
                (leaf, session_id, session_id, session_id),
            )
        return [_event(r) for r in rows]

    def header(self, session_id: str) -> Any:
        """The session's header line (imported transcripts have one), or ``None``."""
        value = self.db.value("SELECT header FROM transcripts WHERE session_id = ?", (session_id,))
        return None if value is None else json.loads(value)

    def sessions(self) -> list[dict[str, Any]]:
        """Every transcript: session id, event count, first and last append time."""
        rows = self.db.query(
            "SELECT t.session_id, COUNT(e.seq), MIN(e.created_at), MAX(e.created_at)"
            " FROM transcripts t LEFT JOIN transcript_events e ON e.session_id = t.session_id"
            " GROUP BY t.session_id ORDER BY t.session_id"
        )
        return [
            {"session_id": s, "events": n, "first_at": first, "last_at": last}
            for s, n, first, last in rows
        ]

    def count(self, session_id: str) -> int:
        return int(
            self.db.value(
                "SELECT COUNT(*) FROM transcript_events WHERE session_id = ?", (session_id,)
            )
        )

    def exists(self, session_id: str) -> bool:
        return (
            self.db.value("SELECT 1 FROM transcripts WHERE session_id = ?", (session_id,))
            is not None
        )

    def jsonl_lines(self, session_id: str) -> Iterator[str]:
        """The transcript as JSONL lines (no newline): the header, then every event."""
        if not self.exists(session_id):
            raise FileNotFoundError(
                errno.ENOENT, f"no transcript for session {session_id}", session_id
            )
        header = self.db.value("SELECT header FROM transcripts WHERE session_id = ?", (session_id,))
        if header is not None:
            yield header
        after = 0
        while batch := self.db.query(
            "SELECT seq, event FROM transcript_events WHERE session_id = ? AND seq > ?"
            " ORDER BY seq LIMIT 1000",
            (session_id, after),
        ):
            for seq, event in batch:
                yield event
                after = seq

    def export_jsonl(self, session_id: str, out: TextIO) -> int:
        """Write the transcript as JSONL to ``out``; returns the number of lines."""
        lines = 0
        for line in self.jsonl_lines(session_id):
            out.write(line + "\n")
            lines += 1
        return lines


def _type_of(event: Any) -> str | None:
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else None
