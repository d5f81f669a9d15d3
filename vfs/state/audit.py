"""The audit of legacy imports, kept in the control database (``state.sqlite``).

One row per ``vfs migrate`` run and one per source file it looked at, with the
file's size and xxh3 content hash as read, what happened and the counts. Each
source's row is committed as soon as that source is done, so a run that is
killed still shows what it did; its status stays ``running`` until a later
run sees that its process is gone and marks it ``interrupted``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from vfs.backends.db import Database
from vfs.backends.host import pid_alive

SOURCE_FIELDS = (
    "path", "kind", "size", "hash", "status", "imported", "kept", "skipped", "archived_to", "error",
)  # fmt: skip


class MigrationAudit:
    def __init__(self, state_db: Database) -> None:
        self.db = state_db

    def start(self, agent: str, source_dir: str, *, keep_sources: bool) -> int:
        """Record a new run by this process; earlier runs whose process died are
        marked ``interrupted`` first."""
        self.mark_interrupted(agent)
        with self.db.write():
            self.db.execute(
                "INSERT INTO migration_runs (agent, source_dir, started_at, keep_sources, pid)"
                " VALUES (?, ?, ?, ?, ?)",
                (agent, source_dir, time.time(), int(keep_sources), os.getpid()),
            )
            return int(self.db.conn.last_insert_rowid())

    def mark_interrupted(self, agent: str) -> list[int]:
        """Mark ``agent``'s runs that are still ``running`` but whose process is
        gone as ``interrupted``; returns their ids."""
        with self.db.write():
            running = self.db.query(
                "SELECT id, pid FROM migration_runs WHERE agent = ? AND status = 'running'",
                (agent,),
            )
            # A run without a pid was recorded before pids were: nothing runs it now.
            dead = [run for run, pid in running if pid is None or not pid_alive(pid)]
            for run in dead:
                self.db.execute(
                    "UPDATE migration_runs SET status = 'interrupted', finished_at = ?"
                    " WHERE id = ?",
                    (time.time(), run),
                )
        return dead

    def record_source(self, run: int, source: dict[str, Any]) -> None:
        """Record (or update) one source of ``run``; committed at once."""
        with self.db.write():
            self.db.execute(
                f"INSERT OR REPLACE INTO migration_sources (run, {', '.join(SOURCE_FIELDS)})"
                f" VALUES (?, {', '.join('?' for _ in SOURCE_FIELDS)})",
                (run, *(source.get(name) for name in SOURCE_FIELDS)),
            )

    def finish(self, run: int, status: str) -> None:
        with self.db.write():
            self.db.execute(
                "UPDATE migration_runs SET finished_at = ?, status = ? WHERE id = ?",
                (time.time(), status, run),
            )

    def history(self, agent: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs for ``agent``, newest first, each with its ``sources``.

        A run still recorded as ``running`` whose process is gone is shown as
        ``interrupted`` (the next run records that; reading writes nothing).
        """
        with self.db.read():
            runs = self.db.query(
                "SELECT id, source_dir, started_at, finished_at, keep_sources, status, pid"
                " FROM migration_runs WHERE agent = ? ORDER BY started_at DESC, id DESC LIMIT ?",
                (agent, -1 if limit is None else limit),
            )
            out = []
            for run_id, source_dir, started, finished, keep, status, pid in runs:
                if status == "running" and (pid is None or not pid_alive(pid)):
                    status = "interrupted"
                sources = self.db.query(
                    f"SELECT {', '.join(SOURCE_FIELDS)} FROM migration_sources WHERE run = ?"
                    " ORDER BY path",
                    (run_id,),
                )
                out.append(
                    {
                        "id": run_id,
                        "agent": agent,
                        "source_dir": source_dir,
                        "started_at": started,
                        "finished_at": finished,
                        "keep_sources": bool(keep),
                        "status": status,
                        "sources": [dict(zip(SOURCE_FIELDS, row, strict=True)) for row in sources],
                    }
                )
        return out
