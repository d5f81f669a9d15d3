"""Serve one agent's workspace at a mount point until it is unmounted or signalled."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import pyfuse3
import trio

from vfs.backends.journal import Follower, Journal
from vfs.mount.follow import follow_journal
from vfs.mount.operations import (
    DEFAULT_CACHE_TIMEOUT,
    JOURNALED_CACHE_TIMEOUT,
    AgentOperations,
    dump_request_counts,
    request_counts,
)
from vfs.state.mounts import MountTable
from vfs.workspace import Workspace

log = logging.getLogger("agentvfs.mount")

#: The filesystem type the kernel shows (``fuse.agentvfs`` in /proc/mounts).
SUBTYPE = "agentvfs"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SYNC_TIMEOUT_S = 20.0

_libc = ctypes.CDLL(None, use_errno=True)


def fuse_options(agent: str, *, read_only: bool, extra: Iterable[str] = ()) -> set[str]:
    """Kernel mount options: permission checks by the kernel, our name, the caller's extras."""
    options = set(pyfuse3.default_options)  # default_permissions
    options |= {f"fsname=agentvfs:{agent}", f"subtype={SUBTYPE}"}
    if read_only:
        options.add("ro")
    for item in extra:
        options.update(o.strip() for o in item.split(",") if o.strip())
    return options


def serve(
    agent: str,
    mountpoint: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    options: Iterable[str] = (),
    cache_timeout: float | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount ``agent`` at ``mountpoint`` and serve requests until unmounted.

    Returns after ``fusermount3 -u``, ``vfs umount``, or SIGTERM/SIGINT/SIGHUP;
    every open file is flushed and the mount is gone by then. ``on_ready`` is
    called once the kernel has the mount. ``cache_timeout`` (seconds the kernel
    trusts names and attributes) defaults to long where the change journal
    tells the mount what other processes change, else to 1 s.
    """
    where = Path(mountpoint).resolve()
    workspace = Workspace.open(agent, home, read_only=read_only)
    workspace.db.writer = "mount"
    table = MountTable(workspace.registry.db)
    table.add(agent, where, os.getpid())
    try:
        reclaim = getattr(workspace.backend, "reclaim_orphans", None)
        if callable(reclaim) and not read_only:
            freed = reclaim()
            if freed:
                log.info("freed %d inodes left open by a process that died", freed)
        follower = _journal_follower(workspace)
        if cache_timeout is None:
            cache_timeout = DEFAULT_CACHE_TIMEOUT if follower is None else JOURNALED_CACHE_TIMEOUT
        operations = AgentOperations(
            workspace.backend, cache_timeout=cache_timeout, writeback=follower is not None
        )
        pyfuse3.init(
            operations, str(where), fuse_options(agent, read_only=read_only, extra=options)
        )
        try:
            if on_ready is not None:
                on_ready()
            trio.run(_serve_until_stopped, operations, follower, where)
        finally:
            operations.close_all()
            pyfuse3.close(unmount=True)
            if follower is not None:
                with contextlib.suppress(Exception):
                    follower.close()
    finally:
        table.remove(where)
        workspace.close()


def _journal_follower(workspace: Workspace) -> Follower | None:
    """A reader of the change journal, where there is one to follow.

    Disk mode has none: any program may change its directory unseen.
    """
    if workspace.mode not in ("sqlite", "hybrid"):
        return None
    try:
        return Journal(workspace.db).follower("mount")
    except Exception:  # e.g. a read-only database: fall back to short timeouts
        log.exception("cannot follow the change journal; caching for 1 s only")
        return None


async def _serve_until_stopped(
    operations: AgentOperations, follower: Follower | None, where: Path
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, where if operations.enable_writeback_cache else None)
        if request_counts is not None:
            nursery.start_soon(_dump_counts_on_signal)
        if follower is not None:
            nursery.start_soon(follow_journal, operations, follower)
        await pyfuse3.main(min_tasks=1, max_tasks=1)
        nursery.cancel_scope.cancel()


async def _stop_on_signal(writeback_at: Path | None) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            if writeback_at is not None:
                # Writes of files still open may sit in the kernel's writeback
                # cache: have it send them (served by this loop) before stopping.
                with trio.move_on_after(SYNC_TIMEOUT_S):
                    await trio.to_thread.run_sync(_syncfs, writeback_at, abandon_on_cancel=True)
            pyfuse3.terminate()
            return


async def _dump_counts_on_signal() -> None:
    # The benchmark reads the counts of each workload: SIGUSR1 writes them now.
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            dump_request_counts()


def _syncfs(where: Path) -> None:
    fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            log.warning("syncfs of %s failed: %s", where, os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)
