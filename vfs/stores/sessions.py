"""Sessions: one row per session key, patched field by field.

A session is a JSON object kept exactly as given (unknown fields included) and
an ``updated_at`` time in epoch milliseconds that never moves backwards.
:meth:`Sessions.patch` changes the named fields of one row in one write
transaction; nothing ever rewrites the whole set of sessions.

Each write of a row bumps its ``revision``; an import records the revision it
wrote, so a row the API wrote after an import is told apart by revision, not
by clocks (a legacy writer's clock may run ahead of this one).
"""

from __future__ import annotations

import builtins
import errno
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vfs.backends.db import Database


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _field_path(name: str) -> str:
    if not name or '"' in name or "\\" in name:
        raise ValueError(f"cannot filter on the field name {name!r}")
    return f'$."{name}"'


@dataclass(frozen=True)
class Session:
    key: str
    fields: dict[str, Any]
    updated_at: int
    created_at: int
    revision: int = 0  # bumped by every write of the row
    imported_revision: int | None = None  # the revision an import wrote, if any

    @property
    def written_since_import(self) -> bool:
        """True if the API wrote this row after an import last did."""
        return self.imported_revision is not None and self.revision > self.imported_revision

    @property
    def session_id(self) -> str | None:
        value = self.fields.get("sessionId")
        return value if isinstance(value, str) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "updated_at": self.updated_at,
            "created_at": self.created_at,
            "fields": self.fields,
        }


_COLUMNS = "key, data, updated_at, created_at, revision, imported_revision"


def _session(row: Any) -> Session:
    key, data, updated_at, created_at, revision, imported_revision = row
    return Session(key, json.loads(data), updated_at, created_at, revision, imported_revision)


class Sessions:
    """The sessions of one agent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> Session | None:
        """The session, or ``None`` if there is none."""
        row = self.db.one(f"SELECT {_COLUMNS} FROM sessions WHERE key = ?", (key,))
        return None if row is None else _session(row)

    def patch(
        self,
        key: str,
        fields: Mapping[str, Any],
        *,
        unset: Iterable[str] = (),
        updated_at: int | None = None,
    ) -> Session:
        """Set ``fields`` (and remove ``unset``) in one session, creating it if needed.

        Other fields are left as they are. ``updated_at`` (epoch ms) defaults to
        now; a row whose time is later already (set by a writer whose clock runs
        ahead) keeps that time, so ``updated_at`` never moves backwards.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("a session key is a non-empty string")
        stamp = now_ms() if updated_at is None else int(updated_at)
        with self.db.write():
            old = self.get(key)
            data: dict[str, Any] = {} if old is None else dict(old.fields)
            data.update(fields)
            for name in unset:
                data.pop(name, None)
            if old is None:
                self.db.execute(
                    "INSERT INTO sessions (key, data, updated_at, created_at, revision)"
                    " VALUES (?, ?, ?, ?, 1)",
                    (key, _dumps(data), stamp, stamp),
                )
            else:
                self.db.execute(
                    "UPDATE sessions SET data = ?, updated_at = max(updated_at, ?),"
                    " revision = revision + 1 WHERE key = ?",
                    (_dumps(data), stamp, key),
                )
            new = self.get(key)
        assert new is not None  # written in this transaction
        return new

    def put(self, key: str, fields: Mapping[str, Any], *, updated_at: int) -> None:
        """Store a whole session as given, as an import does: replaces an
        existing row's fields and records the row as imported."""
        with self.db.write():
            self.db.execute(
                "INSERT INTO sessions (key, data, updated_at, created_at, revision,"
                " imported_revision) VALUES (?, ?, ?, ?, 1, 1)"
                " ON CONFLICT (key) DO UPDATE SET data = excluded.data,"
                " updated_at = max(updated_at, excluded.updated_at),"
                " revision = revision + 1, imported_revision = revision + 1",
                (key, _dumps(dict(fields)), updated_at, now_ms()),
            )

    def import_entry(self, key: str, fields: Mapping[str, Any], *, updated_at: int) -> bool:
        """Store an imported session unless the row should win; True if stored.

        The row wins if the API wrote it after an import did (whatever the
        times say), or if its ``updated_at`` is at least ``updated_at``.
        """
        with self.db.write():
            row = self.get(key)
            if row is not None and (row.written_since_import or row.updated_at >= updated_at):
                return False
            self.put(key, fields, updated_at=updated_at)
            return True

    def list(
        self,
        *,
        prefix: str | None = None,
        updated_after: int | None = None,
        updated_before: int | None = None,
        where: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Session]:
        """Sessions, most recently updated first.

        ``where`` keeps sessions whose top-level fields equal the given values.
        """
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if prefix is not None:
            clauses.append("substr(key, 1, ?) = ?")
            params += [len(prefix), prefix]
        if updated_after is not None:
            clauses.append("updated_at > ?")
            params.append(updated_after)
        if updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(updated_before)
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        for name, value in (where or {}).items():
            clauses.append("json_extract(data, ?) IS json_extract(?, '$')")
            params += [_field_path(name), _dumps(value)]
        sql = f"SELECT {_COLUMNS} FROM sessions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY updated_at DESC, key LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [_session(r) for r in self.db.query(sql, params)]

    def delete(self, key: str) -> None:
        with self.db.write():
            self.db.execute("DELETE FROM sessions WHERE key = ?", (key,))
            if not self.db.conn.changes():
                raise FileNotFoundError(errno.ENOENT, f"no such session: {key}", key)

    def count(self) -> int:
        return int(self.db.value("SELECT COUNT(*) FROM sessions"))
