"""Switching an agent's workspace between disk, sqlite and hybrid mode.

A switch moves the data:

========== ========== ==================================================================
from       to         what happens
========== ========== ==================================================================
disk       sqlite     the disk tree is imported into the database (the directory is
                      left as it was, no longer used)
sqlite     disk       the database tree is written out to the workspace directory,
                      which is made to match it; the file rows are then dropped
hybrid     disk       the overlay is committed (refused on conflicts unless ``force``)
hybrid     sqlite     the merged view is materialised in the database
disk       hybrid     nothing moves: the disk tree becomes the lower layer of an
                      empty overlay
sqlite     hybrid     the database tree is written out to the workspace directory,
                      which becomes the lower layer of an empty overlay
========== ========== ==================================================================

Crash safety: the switch is first recorded in the agent database
(``mode_switch``); the registry's mode flips only once the data is complete in
the new mode, and the old mode's data is dropped only after the flip. Killed at
any point, the agent is in its old mode with all data or in its new mode with
all data, and the next ``switch_mode`` (or opening with ``vfs mode``) finishes.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass

from backends.db import Database
from backends.hybrid import HybridBackend
from backends.mounts import MountTable
from backends.overlay_commit import commit, conflicts, resume
from backends.overlay_crash import step
from backends.overlay_switch import (
    begin_switch,
    clear_files,
    drop_overlay,
    end_switch,
    export_tree,
    import_tree,
    materialize,
    pending_switch,
)
from backends.registry import AgentRecord, Registry, check_mode
from backends.sqlite import SqliteBackend
from vfs.config import remember_mode
from vfs.settings import resolve_home


@dataclass(frozen=True)
class SwitchReport:
    agent: str
    from_mode: str
    to_mode: str
    changed: bool  # False: the agent was in that mode already
    resumed: bool  # an interrupted switch was finished first
    config_updated: bool = False


def current_mode(agent: str, home: str | os.PathLike[str] | None = None) -> str:
    return Registry(resolve_home(home)).get(agent).mode


def switch_mode(
    agent: str, mode: str, home: str | os.PathLike[str] | None = None, *, force: bool = False
) -> SwitchReport:
    """Move ``agent``'s workspace to ``mode``; see the module docstring for what moves."""
    check_mode(mode)
    registry = Registry(resolve_home(home))
    record = registry.get(agent)
    mounts = MountTable(registry.db).for_agent(agent)
    if mounts:
        raise OSError(
            errno.EBUSY,
            f"agent {agent} is mounted at {mounts[0].mountpoint}; unmount it first"
            f" (vfs umount {mounts[0].mountpoint})",
        )
    lock = os.open(registry.agent_dir(agent) / "switch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # one switch of an agent at a time
    db = Database(record.db_path, "agent")
    try:
        record = registry.get(agent)
        resumed = False
        unfinished = pending_switch(db)
        if unfinished is not None:
            _move(registry, record, db, unfinished.from_mode, unfinished.to_mode, unfinished.force)
            resumed = True
            record = registry.get(agent)
        start = record.mode
        if start != mode:
            begin_switch(db, start, mode, force)
            step()
            _move(registry, record, db, start, mode, force)
        updated = remember_mode(agent, registry.home, mode)
        return SwitchReport(agent, start, mode, start != mode, resumed, updated)
    finally:
        db.close()
        os.close(lock)


def _move(
    registry: Registry, record: AgentRecord, db: Database, source: str, target: str, force: bool
) -> None:
    """Run (or finish) one switch; each step checks where the registry already is."""
    agent, workspace = record.id, record.workspace
    here = registry.get(agent).mode
    if here == source:
        if source == "hybrid":
            overlay = HybridBackend(db, workspace)
            try:
                if target == "disk":
                    resume(overlay)  # a commit this switch started and a crash cut short
                    found = [] if force else conflicts(overlay)
                    if found:
                        end_switch(db)
                        names = ", ".join(f"{c.path} ({c.reason})" for c in found[:5])
                        raise OSError(
                            errno.EBUSY,
                            f"cannot switch {agent} to disk mode: commit conflicts: {names};"
                            " resolve them or use --force",
                        )
                    commit(overlay, force=force)
                else:
                    materialize(overlay)
            finally:
                overlay.close()
        elif source == "disk":
            clear_files(db)
            if target == "sqlite":
                workspace.mkdir(parents=True, exist_ok=True)
                import_tree(db, workspace)
        else:  # sqlite -> disk or hybrid: the tree goes out to the directory
            tree = SqliteBackend(db)
            try:
                export_tree(tree, workspace)
            finally:
                tree.close()
        step()
        registry.set_mode(agent, target)
        step()
    if target == "disk" or (source == "sqlite" and target == "hybrid"):
        clear_files(db)
    elif target == "sqlite" and source == "hybrid":
        drop_overlay(db)
    end_switch(db)
