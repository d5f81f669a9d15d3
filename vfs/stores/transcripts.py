"""Transcripts: append-only events per session, linked into a tree by ``parent_id``.

An append with no parent follows the session's head (its latest event). The
head is read and the event inserted in one ``BEGIN IMMEDIATE`` transaction, so
appends from any number of processes form a single chain. An idempotency key
that was seen before returns the event it added instead of adding another.
"""

from __future__ import annotations

import errno
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

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
        return event_id

    def import_entries(
        self, session_id: str, entries: Iterable[ImportedEntry], header: Any = None
    ) -> tuple[int, int]:
        """Store entries exactly as given, in order; ones whose id (or
        idempotency key) the session has are kept as they are.

        ``header`` is stored if the session has none. Returns ``(added, kept)``.
        """
        with self.db.write() as conn:
            self._ensure_session(session_id)
            if header is not None:
                self.db.execute(
                    "UPDATE transcripts SET header = ? WHERE session_id = ? AND header IS NULL",
                    (_dumps(header), session_id),
                )
            rows = [
                (session_id, e.id, e.parent_id, _type_of(e.event), e.idempotency_key,
                 _dumps(e.event), time.time())
                for e in entries
            ]  # fmt: skip
            before = conn.total_changes()
            self.db.executemany(
                "INSERT INTO transcript_events (session_id, id, parent_id, type, idempotency_key,"
                " event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            added = conn.total_changes() - before
        return added, len(rows) - added

    def head(self, session_id: str) -> str | None:
        """The id of the session's latest event."""
        found = self.db.value(
            "SELECT id FROM transcript_events WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
            (session_id,),
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
