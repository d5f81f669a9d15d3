"""The active-mounts table of the control database.

Every mount of an agent is recorded here, so that the CLI can list mounts and
refuse what a live mount forbids (a second mount of one agent, a mode switch,
a rollback). Three kinds: a FUSE mount, recorded by the process serving it
and stale once that process has died; a kernel bind mount of a disk-mode
workspace directory, which has no process and is stale once
``/proc/self/mountinfo`` no longer shows that directory at the mount point
(unmounted behind our back, or a reboot); and a bind mount private to the
mount namespace of one command (``vfs exec`` as an ordinary user), recorded by
the process that runs it and stale once that has died. Stale records are
dropped on read.
"""

from __future__ import annotations

import builtins
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfs.backends.db import Database
from vfs.backends.host import bind_mounted, pid_alive, process_started_at
from vfs.backends.names import check_agent_id


def _serving(pid: int, recorded_at: float) -> bool:
    """The recorded process is alive, and is not a newer process that reuses its pid."""
    if not pid_alive(pid):
        return False
    started = process_started_at(pid)
    return started is None or started <= recorded_at + 2.0  # btime has 1 s resolution


#: the kinds of mount: served by a FUSE process, a kernel bind mount, a bind
#: mount in the private mount namespace of one command
FUSE, BIND, PRIVATE = "fuse", "bind", "private"
_COLUMNS = "agent, mountpoint, pid, started_at, kind, source"


@dataclass(frozen=True)
class MountRecord:
    agent: str
    mountpoint: Path
    #: the serving process (FUSE), the process running the command (private); 0 for bind
    pid: int
    started_at: float
    kind: str = FUSE
    #: the directory a bind mount shows (None for FUSE)
    source: Path | None = None

    @property
    def live(self) -> bool:
        """The mount is still there: its process serves it, or the kernel shows it."""
        if self.kind == BIND:
            return self.source is not None and bind_mounted(self.mountpoint, self.source)
        return _serving(self.pid, self.started_at)


def _record(row: Any) -> MountRecord:
    agent, where, pid, started, kind, source = row
    return MountRecord(agent, Path(where), pid, started, kind, source and Path(source))


class MountTable:
    """Read and write the ``mounts`` table of a control :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        agent: str,
        mountpoint: str | os.PathLike[str],
        pid: int,
        *,
        kind: str = FUSE,
        source: str | os.PathLike[str] | None = None,
    ) -> MountRecord:
        """Record a mount; ``FileExistsError`` if the agent or mount point is live.

        A FUSE mount names its serving process, a private one the process
        running its command; a bind mount names its ``source`` directory
        instead (and ``pid`` 0).
        """
        check_agent_id(agent)
        if kind not in (FUSE, BIND, PRIVATE) or (kind == BIND) != (source is not None):
            raise ValueError(
                f"a {kind} mount record needs {'a source' if kind == BIND else 'a pid'}"
            )
        where = str(Path(mountpoint).resolve())
        shown = None if source is None else str(source)
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
                "INSERT INTO mounts (mountpoint, agent, pid, started_at, kind, source)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (where, agent, pid, started, kind, shown),
            )
        return MountRecord(
            agent, Path(where), pid, started, kind, None if shown is None else Path(shown)
        )

    def remove(self, mountpoint: str | os.PathLike[str]) -> None:
        where = str(Path(mountpoint).resolve())
        with self.db.write():
            self.db.execute("DELETE FROM mounts WHERE mountpoint = ?", (where,))

    def list(self) -> list[MountRecord]:
        """Live mounts, ordered by mount point; stale records are deleted."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM mounts ORDER BY mountpoint")
        records = [_record(r) for r in rows]
        live = [r for r in records if r.live]
        if len(live) < len(records):
            self.drop_stale()
        return live

    def for_agent(self, agent: str) -> builtins.list[MountRecord]:
        """Live mounts of ``agent`` (at most one)."""
        return [r for r in self.list() if r.agent == agent]

    def stale(self) -> builtins.list[MountRecord]:
        """Records of mounts that are gone: a FUSE process killed without
        unmounting, a bind mount unmounted without ``vfs umount``."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM mounts")
        return [r for r in map(_record, rows) if not r.live]

    def drop_stale(self) -> int:
        """Delete the records of mounts that are gone; returns how many."""
        with self.db.write():
            stale = self.stale()
            for record in stale:
                self.db.execute(
                    "DELETE FROM mounts WHERE mountpoint = ? AND pid = ?",
                    (str(record.mountpoint), record.pid),
                )
        return len(stale)
