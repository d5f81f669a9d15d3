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
all data, and the next ``switch_mode``, or the next opening of the workspace,
finishes the switch before anything else touches the data.

Failure: what can be seen in advance (names, path lengths, free space; see
:mod:`vfs.settings.preflight`) is checked before anything moves. A switch
that fails midway (a disk error) stays recorded and is marked failed: until
the registry's mode flips the old mode's data is whole and in use, so the
agent keeps working in its old mode; opening it warns instead of retrying.
``switch_mode`` to the same mode again completes it once the cause is fixed;
:func:`abort_switch` (or ``switch_mode`` back to the old mode) undoes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from vfs.backends.db import Database
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.commit import Conflict, commit, conflicts, resume
from vfs.backends.hybrid.tree_copy import (
    PendingSwitch,
    begin_switch,
    clear_files,
    drop_overlay,
    end_switch,
    export_tree,
    import_tree,
    materialize,
    pending_switch,
)
from vfs.backends.names import short_path
from vfs.backends.progress import Progress, no_progress
from vfs.backends.sqlite.backend import SqliteBackend
from vfs.backends.steps import step
from vfs.settings import resolve_home
from vfs.settings.config import open_blob_store, remember_mode
from vfs.settings.preflight import check_switch
from vfs.state.mounts import MountTable
from vfs.state.registry import AgentRecord, Registry, check_mode


@dataclass(frozen=True)
class SwitchReport:
    agent: str
    from_mode: str
    to_mode: str
    changed: bool  # False: the agent was in that mode already
    resumed: bool  # an interrupted switch was finished first
    config_updated: bool = False
    undone: str | None = None  # the mode of an unfinished switch that was undone instead


class UnfinishedSwitch(Exception):
    """Opening an agent whose mode switch stopped on an error and was not finished.

    ``flipped``: the registry names the new mode already, so the agent may only
    be read until the switch is finished.
    """

    def __init__(
        self,
        agent: str,
        switch: PendingSwitch,
        reason: str,
        flipped: bool,
        state: str = "is unfinished",
    ) -> None:
        self.agent, self.switch, self.reason, self.flipped = agent, switch, reason, flipped
        to = switch.to_mode
        if flipped:
            advice = (
                f"{agent} is read-only until it is finished: fix the cause and run"
                f" `vfs mode {agent} {to}`"
            )
        else:
            advice = (
                f"{agent} stays in {switch.from_mode} mode: fix the cause and run"
                f" `vfs mode {agent} {to}`, or `vfs mode {agent} --abort` to undo it"
            )
        super().__init__(
            f"the switch of {agent} from {switch.from_mode} to {to} mode {state}"
            f" ({reason}); {advice}"
        )


class UnfinishedSwitchWarning(UserWarning):
    """Warned when an agent is opened while its mode switch is unfinished."""


def current_mode(agent: str, home: str | os.PathLike[str] | None = None) -> str:
    return Registry(resolve_home(home)).get(agent).mode


def switch_mode(
    agent: str,
    mode: str,
    home: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: Progress = no_progress,
) -> SwitchReport:
    """Move ``agent``'s workspace to ``mode``; see the module docstring for what moves.

    ``progress`` hears of each file moved (commit steps for hybrid -> disk).
    """
    check_mode(mode)
    registry = Registry(resolve_home(home))
    registry.get(agent)
    mounts = MountTable(registry.db).for_agent(agent)
    if mounts:
        raise OSError(
            errno.EBUSY,
            f"agent {agent} is mounted at {mounts[0].mountpoint}; unmount it first"
            f" (vfs umount {mounts[0].mountpoint})",
        )
    with _switching(registry, agent) as db:
        record = registry.get(agent)
        unfinished = pending_switch(db)
        if unfinished is not None and record.mode == unfinished.from_mode:
            if mode == record.mode:  # back to where it is: undo the switch
                _undo(db, unfinished)
                updated = remember_mode(agent, registry.home, mode)
                return SwitchReport(agent, mode, mode, False, False, updated, unfinished.to_mode)
            check_switch(db, agent, record.workspace, record.mode, unfinished.to_mode)
        resumed = _attempt(registry, agent, db, unfinished, progress)
        start = registry.get(agent).mode
        if resumed is not None and resumed.to_mode == mode == start:  # completed, as asked
            updated = remember_mode(agent, registry.home, mode)
            return SwitchReport(agent, resumed.from_mode, mode, True, True, updated)
        if start != mode:
            check_switch(db, agent, record.workspace, start, mode)
            _mark_pending(registry, agent)
            begin_switch(db, start, mode, force)
            step()
            _attempt(registry, agent, db, PendingSwitch(start, mode, force), progress)
        updated = remember_mode(agent, registry.home, mode)
        return SwitchReport(agent, start, mode, start != mode, resumed is not None, updated)


def abort_switch(agent: str, home: str | os.PathLike[str] | None = None) -> PendingSwitch | None:
    """Undo ``agent``'s unfinished mode switch; returns it, or None if there was none.

    Refused once the registry names the new mode: from there on the old
    mode's data is being dropped, and only finishing the switch is safe.
    """
    registry = Registry(resolve_home(home))
    registry.get(agent)
    with _switching(registry, agent) as db:
        unfinished = pending_switch(db)
        if unfinished is None:
            return None
        if registry.get(agent).mode != unfinished.from_mode:
            raise OSError(
                errno.EBUSY,
                f"the switch of {agent} to {unfinished.to_mode} mode is past the point where"
                f" it can be undone; finish it with `vfs mode {agent} {unfinished.to_mode}`",
            )
        _undo(db, unfinished)
        remember_mode(agent, registry.home, unfinished.from_mode)
        return unfinished


def _undo(db: Database, unfinished: PendingSwitch) -> None:
    """Forget a switch that has not flipped the mode; the old mode's data is whole."""
    if unfinished.from_mode == "disk":
        clear_files(db)  # a partial import (disk mode keeps no file rows)
    # sqlite -> disk/hybrid leaves a partial export in the workspace directory, which
    # sqlite mode does not use; hybrid -> disk may leave a commit journal, which the
    # next `vfs commit` finishes (the overlay shows every change meanwhile).
    end_switch(db)


def _attempt(
    registry: Registry,
    agent: str,
    db: Database,
    switch: PendingSwitch | None,
    progress: Progress = no_progress,
) -> PendingSwitch | None:
    """Run the recorded ``switch``; one that fails is marked so that opens stop retrying."""
    if switch is None:
        return None
    try:
        return _finish(registry, agent, db, progress)
    except Exception as exc:  # any failure: retried on every open, it would lock the agent
        if pending_switch(db) is None:
            raise  # refused and forgotten (commit conflicts)
        reason = _reason(exc)
        _failed_marker(registry, agent).write_text(reason + "\n")
        flipped = registry.get(agent).mode != switch.from_mode
        failed = UnfinishedSwitch(agent, switch, reason, flipped, state="stopped")
        raise OSError(getattr(exc, "errno", None) or errno.EIO, str(failed)) from exc


def _reason(exc: Exception) -> str:
    if not isinstance(exc, OSError):
        return str(exc) or type(exc).__name__
    text = exc.strerror or str(exc)
    return f"{text}: {short_path(str(exc.filename))}" if exc.filename else text


def unfinished_switch(
    agent: str, home: str | os.PathLike[str] | None = None
) -> UnfinishedSwitch | None:
    """``agent``'s switch that stopped on an error, if any (one ``stat`` when none)."""
    registry = Registry(resolve_home(home))
    registry.get(agent)
    failed = _failed_marker(registry, agent)
    if not failed.exists():
        return None
    with _switching(registry, agent) as db:
        unfinished = pending_switch(db)
        if unfinished is None or not failed.exists():
            return None
        flipped = registry.get(agent).mode != unfinished.from_mode
        return UnfinishedSwitch(agent, unfinished, failed.read_text().strip(), flipped)


def finish_interrupted_switch(registry: Registry, agent: str) -> bool:
    """Finish a switch of ``agent`` that a crash cut short; True if there was one.

    Opening a workspace calls this first: until the switch is finished the
    old mode's data is still to be dropped, and in some directions (sqlite ->
    hybrid) the mode the registry already names would lose new writes to that
    cleanup. A switch running in another process is waited for. Costs one
    ``stat`` when no switch was started.

    A switch that stopped on an error is not retried here (that is for
    ``vfs mode``, once the cause is fixed): :class:`UnfinishedSwitch` says so.
    """
    if not _pending_marker(registry, agent).exists():
        return False
    with _switching(registry, agent) as db:
        unfinished = pending_switch(db)
        if unfinished is None:
            return False
        failed = _failed_marker(registry, agent)
        if failed.exists():
            flipped = registry.get(agent).mode != unfinished.from_mode
            raise UnfinishedSwitch(agent, unfinished, failed.read_text().strip(), flipped)
        try:
            _finish(registry, agent, db)
        except Exception as exc:  # see _attempt
            reason = _reason(exc)
            failed.write_text(reason + "\n")
            flipped = registry.get(agent).mode != unfinished.from_mode
            raise UnfinishedSwitch(agent, unfinished, reason, flipped) from exc
        remember_mode(agent, registry.home, unfinished.to_mode)
        return True


def _pending_marker(registry: Registry, agent: str) -> Path:
    """Exists from before a switch is recorded until it is finished or given up."""
    return registry.agent_dir(agent) / "switch.pending"


def _failed_marker(registry: Registry, agent: str) -> Path:
    """Exists while the pending switch is one that stopped on an error; holds the error."""
    return registry.agent_dir(agent) / "switch.failed"


def _mark_pending(registry: Registry, agent: str) -> None:
    marker = _pending_marker(registry, agent)
    marker.touch(0o600)
    directory = os.open(marker.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the marker must outlive a power cut as the database row does
    finally:
        os.close(directory)


@contextmanager
def _switching(registry: Registry, agent: str) -> Iterator[Database]:
    """The agent's database, with the switch lock held: one switch of an agent at a time."""
    lock = os.open(registry.agent_dir(agent) / "switch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = registry.get(agent)
        db = Database(record.db_path, "agent", create=False)
        db.blobs = open_blob_store(agent, registry.home, record.db_path.parent)
        try:
            yield db
        finally:
            if pending_switch(db) is None:
                _failed_marker(registry, agent).unlink(missing_ok=True)
                _pending_marker(registry, agent).unlink(missing_ok=True)
            db.close()
    finally:
        os.close(lock)


def _finish(
    registry: Registry, agent: str, db: Database, progress: Progress = no_progress
) -> PendingSwitch | None:
    """Finish the switch the database records, if any; returns it."""
    unfinished = pending_switch(db)
    if unfinished is not None:
        record = registry.get(agent)
        source, target = unfinished.from_mode, unfinished.to_mode
        _move(registry, record, db, source, target, unfinished.force, progress)
    return unfinished


def _refuse(db: Database, agent: str, found: list[Conflict]) -> NoReturn:
    end_switch(db)
    names = ", ".join(f"{c.path} ({c.reason})" for c in found[:5])
    raise OSError(
        errno.EBUSY,
        f"cannot switch {agent} to disk mode: commit conflicts: {names};"
        " resolve them or use --force",
    )


def _move(
    registry: Registry,
    record: AgentRecord,
    db: Database,
    source: str,
    target: str,
    force: bool,
    progress: Progress = no_progress,
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
                        _refuse(db, agent, found)
                    # A disk edit between the check and the commit leaves its change in
                    # the overlay, which the flip to disk mode would then drop.
                    report = commit(overlay, force=force, progress=progress)
                    if report.conflicts:
                        _refuse(db, agent, report.conflicts)
                else:
                    materialize(overlay, progress)
            finally:
                overlay.close()
        elif source == "disk":
            clear_files(db)
            if target == "sqlite":
                workspace.mkdir(parents=True, exist_ok=True)
                import_tree(db, workspace, progress)
        else:  # sqlite -> disk or hybrid: the tree goes out to the directory
            tree = SqliteBackend(db)
            try:
                export_tree(tree, workspace, progress)
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
