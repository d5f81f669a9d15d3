"""The active-mounts table of the control database.

The process serving a FUSE mount records itself here, so that the CLI can list
mounts and refuse what a live mount forbids (a second mount of one agent, a
mode switch). A record whose process has died is stale and is dropped on read.
"""

from __future__ import annotations

import builtins
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vfs.backends.db import Database
from vfs.backends.host import pid_alive, process_started_at
from vfs.backends.names import check_agent_id


def _serving(pid: int, recorded_at: float) -> bool:
    """The recorded process is alive, and is not a newer process that reuses its pid."""
    if not pid_alive(pid):
        return False
    started = process_started_at(pid)
    return started is None or started <= recorded_at + 2.0  # btime has 1 s resolution


@dataclass(frozen=True)
class MountRecord:
    agent: str
    mountpoint: Path
    pid: int
    started_at: float


class MountTable:
    """Read and write the ``mounts`` table of a control :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, agent: str, mountpoint: str | os.PathLike[str], pid: int) -> MountRecord:
        """Record a mount; ``FileExistsError`` if the agent or mount point is live."""
        check_agent_id(agent)
        where = str(Path(mountpoint).resolve())
        with self.db.write():
            self.drop_stale()
            row = self.db.one(
                "SELECT agent, mountpoint FROM mounts WHERE agent = ? OR mountpoint = ?",
                (agent, where),
            )
            if row is not None:
                raise FileExistsError(
                    errno.EEXIST, f"agent {row[0]} is already mounted at {row[1]}", where
                )
            started = time.time()
            self.db.execute(
                "INSERT INTO mounts (mountpoint, agent, pid, started_at) VALUES (?, ?, ?, ?)",
                (where, agent, pid, started),
            )
        return MountRecord(agent, Path(where), pid, started)

    def remove(self, mountpoint: str | os.PathLike[str]) -> None:
        where = str(Path(mountpoint).resolve())
        with self.db.write():
            self.db.execute("DELETE FROM mounts WHERE mountpoint = ?", (where,))

    def list(self) -> list[MountRecord]:
        """Live mounts, ordered by mount point; stale records are deleted."""
        rows = self.db.query(
            "SELECT agent, mountpoint, pid, started_at FROM mounts ORDER BY mountpoint"
        )
        records = [MountRecord(r[0], Path(r[1]), r[2], r[3]) for r in rows]
        live = [r for r in records if _serving(r.pid, r.started_at)]
        if len(live) < len(records):
            self.drop_stale()
        return live

    def for_agent(self, agent: str) -> builtins.list[MountRecord]:
        """Live mounts of ``agent`` (at most one)."""
        return [r for r in self.list() if r.agent == agent]

    def stale(self) -> builtins.list[MountRecord]:
        """Records whose process is gone (a mount killed without unmounting)."""
        rows = self.db.query("SELECT agent, mountpoint, pid, started_at FROM mounts")
        records = [MountRecord(r[0], Path(r[1]), r[2], r[3]) for r in rows]
        return [r for r in records if not _serving(r.pid, r.started_at)]

    def drop_stale(self) -> int:
        """Delete the records of mounts whose process is gone; returns how many."""
        with self.db.write():
            stale = self.stale()
            for record in stale:
                self.db.execute(
                    "DELETE FROM mounts WHERE mountpoint = ? AND pid = ?",
                    (str(record.mountpoint), record.pid),
                )
        return len(stale)
