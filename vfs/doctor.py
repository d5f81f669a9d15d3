"""``vfs doctor``: find what a crash, a full disk, bit rot or a hand-edited file
left wrong in a home, and repair what can be repaired without losing data.

Per agent: SQLite's integrity and foreign-key checks, every chunk's bytes
against its hash, reference counts, references to missing chunks, entries that
name nothing, inodes without a name, link counts, nameless inodes whose
process died, whiteouts over nothing, interrupted mode switches and commits.
For the home: stale mount records and what killed backups and restores left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vfs.backends import Database, open_backend
from vfs.backends.host import pid_alive
from vfs.backends.hybrid.check import OverlayCheck
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.hybrid.tree_copy import pending_switch
from vfs.backends.sqlite.check import FileTablesCheck, Finding
from vfs.blob_gc import collect_blobs
from vfs.settings import resolve_home
from vfs.settings.config import open_blob_store
from vfs.settings.switch import finish_interrupted_switch
from vfs.state.mounts import MountTable
from vfs.state.registry import AgentRecord, Registry


@dataclass
class Health:
    """What doctor found in one agent (or, as ``agent=""``, in the home itself)."""

    agent: str
    found: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.remaining

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def _database_findings(record: AgentRecord) -> Finding | None:
    path = record.db_path
    if not path.exists():
        return Finding("database", f"{path} is missing", False)
    if path.stat().st_size == 0:
        return Finding("database", f"{path} is empty", False)
    return None


def _orphans_of_dead_writers(db: Database) -> int:
    return sum(1 for (pid,) in db.query("SELECT pid FROM orphans") if not pid_alive(int(pid)))


class _AgentChecks:
    """The checks that apply to one agent's database in its mode."""

    def __init__(
        self, stack: contextlib.ExitStack, registry: Registry, record: AgentRecord
    ) -> None:
        self.record = record
        self.db = Database(record.db_path, "agent", create=False)
        stack.callback(self.db.close)
        self.db.blobs = open_blob_store(record.id, registry.home, record.db_path.parent)
        self.checks: list[FileTablesCheck | OverlayCheck] = [FileTablesCheck(self.db)]
        if record.mode == "hybrid" and record.workspace.is_dir():
            lower = LowerTree(record.workspace)
            stack.callback(lower.close)
            self.checks.append(OverlayCheck(self.db, lower))

    def findings(self) -> list[Finding]:
        found = [finding for check in self.checks for finding in check.findings()]
        if pending_switch(self.db) is not None:
            found.append(
                Finding("interrupted mode switch", f"`vfs mode {self.record.id}` finishes it", True)
            )
        dead = _orphans_of_dead_writers(self.db)
        if dead:
            found.append(Finding("nameless files", f"{dead} left by writers that died", True))
        return found

    def repair(self, registry: Registry) -> list[str]:
        done = [action for check in self.checks for action in check.repair()]
        if pending_switch(self.db) is not None and finish_interrupted_switch(
            registry, self.record.id
        ):
            done.append("finished the interrupted mode switch")
        if _orphans_of_dead_writers(self.db) and self.record.mode in ("sqlite", "hybrid"):
            backend = open_backend(self.record.mode, self.db, self.record.workspace)
            try:
                done.append(
                    f"freed {backend.reclaim_orphans()} nameless files of writers that died"
                )
            finally:
                backend.close()
        return done


def _orphan_blobs(registry: Registry, agent: str | None, health: Health, *, fix: bool) -> None:
    """Blobs no agent references, past the grace period, in the stores of
    ``agent`` (or of every agent); ``fix`` deletes them."""
    found = [
        Finding(
            "orphan blobs", f"{len(c.orphans)} in {c.url}, unreferenced past the grace period", True
        )
        for c in collect_blobs(registry, agent, delete=False)
        if c.orphans
    ]
    health.found += found
    if fix and found:
        deleted = sum(c.deleted for c in collect_blobs(registry, agent, delete=True))
        health.repaired.append(f"deleted {deleted} orphan blobs")
        health.remaining += [
            Finding("orphan blobs", f"{len(c.orphans) - c.deleted} in {c.url} not deleted", False)
            for c in collect_blobs(registry, agent, delete=False)
            if c.orphans
        ]
    else:
        health.remaining += found


def check_agent(registry: Registry, record: AgentRecord, *, fix: bool) -> Health:
    health = Health(record.id)
    broken = _database_findings(record)
    if broken is not None:
        health.found = health.remaining = [broken]
        return health
    try:
        with contextlib.ExitStack() as stack:
            checks = _AgentChecks(stack, registry, record)
            health.found = checks.findings()
            if fix and health.found:
                health.repaired = checks.repair(registry)
                health.remaining = checks.findings()
            else:
                health.remaining = list(health.found)
    except OSError as exc:
        where = exc.filename or record.db_path
        finding = Finding("database", f"{where}: {exc.strerror or exc}", False)
        health.found, health.remaining = [*health.found, finding], [finding]
    return health


def _leftovers(registry: Registry) -> list[Path]:
    """Staging directories of restores and backups whose process is gone."""
    agents = registry.home / "agents"
    found = []
    for stage in agents.glob(".restore-*"):
        pid = stage.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            found.append(stage)
    for workdir in agents.glob("*/.backup-*"):
        pid = workdir.name.split("-")[1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            found.append(workdir)
    return found


def check_home_itself(registry: Registry, *, fix: bool) -> Health:
    health = Health("")
    mounts = MountTable(registry.db)
    for record in mounts.stale():
        health.found.append(
            Finding("stale mount record", f"{record.agent} at {record.mountpoint}", True)
        )
    for path in _leftovers(registry):
        health.found.append(Finding("leftover", f"{path} (an interrupted backup or restore)", True))
    for agent in registry.list():
        if not agent.db_path.parent.is_dir():
            health.found.append(
                Finding("agent directory", f"{agent.id}: {agent.db_path.parent} is missing", False)
            )
    if fix:
        dropped = mounts.drop_stale()
        if dropped:
            health.repaired.append(f"dropped {dropped} stale mount records")
        for path in _leftovers(registry):
            shutil.rmtree(path, ignore_errors=True)
            health.repaired.append(f"removed {path}")
    health.remaining = [f for f in health.found if not (fix and f.repairable)]
    return health


def doctor(
    home: str | os.PathLike[str] | None = None, agent: str | None = None, *, fix: bool = False
) -> list[Health]:
    """Check one agent, or the home and every agent; repair with ``fix``."""
    registry = Registry(resolve_home(home))
    if agent is not None:
        health = check_agent(registry, registry.get(agent), fix=fix)
        _orphan_blobs(registry, agent, health, fix=fix)
        return [health]
    home_health = check_home_itself(registry, fix=fix)
    _orphan_blobs(registry, None, home_health, fix=fix)
    return [home_health] + [check_agent(registry, record, fix=fix) for record in registry.list()]
