"""Sessions: one row per session key, patched field by field.

A session is a JSON object kept exactly as given (unknown fields included) and
an ``updated_at`` time in epoch milliseconds. :meth:`Sessions.patch` changes the
named fields of one row in one write transaction; nothing ever rewrites the
whole set of sessions.
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


def _session(row: Any) -> Session:
    return Session(row[0], json.loads(row[1]), row[2], row[3])


class Sessions:
    """The sessions of one agent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> Session | None:
        """The session, or ``None`` if there is none."""
        row = self.db.one(
            "SELECT key, data, updated_at, created_at FROM sessions WHERE key = ?", (key,)
        )
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

        Other fields are left as they are. ``updated_at`` (epoch ms) defaults to now.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("a session key is a non-empty string")
        stamp = now_ms() if updated_at is None else int(updated_at)
        with self.db.write():
            row = self.db.one("SELECT data FROM sessions WHERE key = ?", (key,))
            data: dict[str, Any] = {} if row is None else json.loads(row[0])
            data.update(fields)
            for name in unset:
                data.pop(name, None)
            if row is None:
                self.db.execute(
                    "INSERT INTO sessions (key, data, updated_at, created_at) VALUES (?, ?, ?, ?)",
                    (key, _dumps(data), stamp, stamp),
                )
            else:
                self.db.execute(
                    "UPDATE sessions SET data = ?, updated_at = ? WHERE key = ?",
                    (_dumps(data), stamp, key),
                )
            return Session(key, data, stamp, stamp if row is None else self._created(key))

    def _created(self, key: str) -> int:
        return int(self.db.value("SELECT created_at FROM sessions WHERE key = ?", (key,)))

    def put(self, key: str, fields: Mapping[str, Any], *, updated_at: int) -> None:
        """Store a whole session as given (used by imports); replaces an existing row."""
        with self.db.write():
            self.db.execute(
                "INSERT INTO sessions (key, data, updated_at, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET data = excluded.data,"
                " updated_at = excluded.updated_at",
                (key, _dumps(dict(fields)), updated_at, now_ms()),
            )

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
        sql = "SELECT key, data, updated_at, created_at FROM sessions"
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
