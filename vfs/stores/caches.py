"""Scoped caches: values keyed by ``(scope, key)`` with TTLs and an LRU size budget.

Scopes are ``agent``, ``session:<key>``, ``run:<id>`` and ``tool:<name>``.
Values are bytes or anything JSON can hold. Every get and set is one short
write transaction, so the budget, the LRU order and the hit/miss/eviction
counters stay exact with any number of processes at once. Small values are
stored inline; larger ones in the chunk store, like file content.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from vfs.backends.db import Database
from vfs.stores.content import ChunkedContent

INLINE_MAX = 16 * 1024
SCOPE = re.compile(r"agent|(session|run|tool):.+", re.DOTALL)
COUNTERS = ("hits", "misses", "evictions", "expirations")
_MISSING = object()


def check_scope(scope: str) -> str:
    if not isinstance(scope, str) or not SCOPE.fullmatch(scope):
        raise ValueError(
            f"invalid cache scope {scope!r}: use 'agent', 'session:<key>', 'run:<id>' or 'tool:<name>'"
        )
    return scope


@dataclass(frozen=True)
class CacheEntry:
    """What is known of one entry without reading its value."""

    scope: str
    key: str
    kind: str
    size: int
    expires_at: float | None
    accessed_at: float
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Caches:
    """The scoped caches of one agent."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.content = ChunkedContent(db, "cache_chunks", "entry")

    # -- settings and counters -----------------------------------------------------

    def _state(self, name: str) -> int:
        return int(self.db.value("SELECT value FROM cache_state WHERE name = ?", (name,)))

    def _count(self, name: str, n: int = 1) -> None:
        if n:
            self.db.execute("UPDATE cache_state SET value = value + ? WHERE name = ?", (n, name))

    @property
    def budget(self) -> int:
        """The most bytes all entries may hold together; older ones are evicted past it."""
        return self._state("budget")

    def set_budget(self, size: int) -> None:
        if size < 0:
            raise ValueError("the cache budget cannot be negative")
        with self.db.write():
            self.db.execute("UPDATE cache_state SET value = ? WHERE name = 'budget'", (size,))
            self._evict(time.time(), keep=None)

    def stats(self) -> dict[str, int]:
        """Hits, misses, evictions, expirations, entries, bytes and the budget."""
        with self.db.read():
            stats = {name: int(value) for name, value in self.db.query("SELECT * FROM cache_state")}
            stats["entries"] = int(self.db.value("SELECT COUNT(*) FROM cache_entries"))
        return stats

    # -- values ------------------------------------------------------------------

    def get(self, scope: str, key: str, default: Any = None) -> Any:
        """The value, or ``default`` if there is none or it has expired."""
        check_scope(scope)
        with self.db.write():
            now = time.time()  # after the lock wait: an entry may expire meanwhile
            row = self.db.one(
                "SELECT id, kind, value, size, expires_at FROM cache_entries"
                " WHERE scope = ? AND key = ?",
                (scope, key),
            )
            if row is None:
                self._count("misses")
                return default
            entry_id, kind, value, size, expires_at = row
            if expires_at is not None and expires_at <= now:
                self.db.execute("DELETE FROM cache_entries WHERE id = ?", (entry_id,))
                self._count("expirations")
                self._count("misses")
                return default
            self.db.execute(
                "UPDATE cache_entries SET accessed_at = ? WHERE id = ?", (now, entry_id)
            )
            self._count("hits")
            data = (
                bytes(value)
                if value is not None
                else self.content.read(entry_id, size, INLINE_MAX, 0, size)
            )
        return data if kind == "bytes" else json.loads(data)

    def set(self, scope: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` (bytes, or a JSON value) under ``(scope, key)``.

        ``ttl`` is in seconds. Least recently used entries are evicted until
        everything fits the budget; a value larger than the budget is refused.
        """
        check_scope(scope)
        if not isinstance(key, str):
            raise ValueError("cache keys are strings")
        if isinstance(value, bytes | bytearray | memoryview):
            kind, data = "bytes", bytes(value)
        else:
            kind = "json"
            data = json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        if ttl is not None and ttl <= 0:
            raise ValueError("a cache TTL must be positive")
        with self.db.write():
            now = time.time()
            if len(data) > self.budget:
                raise ValueError(
                    f"a {len(data)}-byte value does not fit the {self.budget}-byte cache budget"
                )
            self.db.execute("DELETE FROM cache_entries WHERE scope = ? AND key = ?", (scope, key))
            inline = len(data) <= INLINE_MAX
            self.db.execute(
                "INSERT INTO cache_entries (scope, key, kind, value, size, expires_at,"
                " accessed_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (scope, key, kind, data if inline else None, len(data),
                 None if ttl is None else now + ttl, now, now),
            )  # fmt: skip
            entry_id = int(self.db.conn.last_insert_rowid())
            if not inline:
                self.content.write(entry_id, data, INLINE_MAX)
            self._evict(now, keep=entry_id)

    def _evict(self, now: float, keep: int | None) -> None:
        budget = self.budget
        if self._state("bytes") <= budget:
            return
        self.db.execute(
            "DELETE FROM cache_entries WHERE expires_at <= ? AND id IS NOT ?", (now, keep)
        )
        self._count("expirations", self.db.conn.changes())
        excess = self._state("bytes") - budget
        evicted = 0
        while excess > 0:
            rows = self.db.query(
                "SELECT id, size FROM cache_entries WHERE id IS NOT ?"
                " ORDER BY accessed_at, id LIMIT 256",
                (keep,),
            )
            if not rows:
                break
            for entry_id, size in rows:
                self.db.execute("DELETE FROM cache_entries WHERE id = ?", (entry_id,))
                evicted += 1
                excess -= size
                if excess <= 0:
                    break
        self._count("evictions", evicted)

    def delete(self, scope: str, key: str) -> bool:
        """Remove one entry; false if there was none."""
        check_scope(scope)
        with self.db.write():
            self.db.execute("DELETE FROM cache_entries WHERE scope = ? AND key = ?", (scope, key))
            return bool(self.db.conn.changes())

    def clear(self, scope: str | None = None) -> int:
        """Remove every entry of ``scope`` (of all scopes if ``None``); returns how many."""
        with self.db.write():
            if scope is None:
                self.db.execute("DELETE FROM cache_entries")
            else:
                self.db.execute("DELETE FROM cache_entries WHERE scope = ?", (check_scope(scope),))
            return int(self.db.conn.changes())

    def purge_expired(self) -> int:
        """Remove expired entries now rather than when they are next touched."""
        with self.db.write():
            self.db.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (time.time(),))
            removed = int(self.db.conn.changes())
            self._count("expirations", removed)
            return removed

    def entries(self, scope: str | None = None, *, limit: int | None = None) -> list[CacheEntry]:
        """Entries that have not expired, most recently used first."""
        rows = self.db.query(
            "SELECT scope, key, kind, size, expires_at, accessed_at, created_at FROM cache_entries"
            " WHERE (? IS NULL OR scope = ?) AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY accessed_at DESC, id DESC LIMIT ?",
            (scope, scope, time.time(), -1 if limit is None else limit),
        )
        return [CacheEntry(*r) for r in rows]

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.get(*item, default=_MISSING) is not _MISSING
