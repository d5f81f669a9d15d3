"""Serve one agent's workspace at a mount point until it is unmounted or signalled."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import pyfuse3
import trio

from vfs.backends.journal import Follower, Journal
from vfs.mount import counting
from vfs.mount.follow import follow_journal
from vfs.mount.operations import DEFAULT_CACHE_TIMEOUT, JOURNALED_CACHE_TIMEOUT, AgentOperations
from vfs.mount.process import SUBTYPE
from vfs.state.mounts import MountTable
from vfs.workspace import Workspace

log = logging.getLogger("agentvfs.mount")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

#: Seconds between frees of the inodes the kernel forgot after their last name went.
FORGOTTEN_INTERVAL = 0.05


def fuse_options(agent: str, *, read_only: bool, extra: Iterable[str] = ()) -> set[str]:
    """Kernel mount options: permission checks by the kernel, our name, the caller's
    extras, and always ``nodev``."""
    options = set(pyfuse3.default_options)  # default_permissions
    options |= {f"fsname=agentvfs:{agent}", f"subtype={SUBTYPE}"}
    if read_only:
        options.add("ro")
    for item in extra:
        options.update(o.strip() for o in item.split(",") if o.strip())
    # Device nodes may be created and listed, never opened through the mount:
    # a workspace must not become a way to reach the host's devices.
    options.discard("dev")
    options.add("nodev")
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
    trusts names and attributes) defaults to long in sqlite mode, where the
    change journal tells the mount everything other processes change, else to
    1 s (disk mode, and hybrid mode's disk tree, change unjournaled).
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
        created_timeout = None
        if cache_timeout is None:
            # Hybrid mode's disk tree may change under it unjournaled; what
            # the mount created lives only in the database.
            long_ok = follower is not None and workspace.mode == "sqlite"
            cache_timeout = JOURNALED_CACHE_TIMEOUT if long_ok else DEFAULT_CACHE_TIMEOUT
            if follower is not None:
                created_timeout = JOURNALED_CACHE_TIMEOUT
        operations = AgentOperations(
            workspace.backend,
            cache_timeout=cache_timeout,
            journaled=follower is not None,
            created_timeout=created_timeout,
        )
        pyfuse3.init(
            operations, str(where), fuse_options(agent, read_only=read_only, extra=options)
        )
        try:
            if on_ready is not None:
                on_ready()
            trio.run(_serve_until_stopped, operations, follower)
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


async def _serve_until_stopped(operations: AgentOperations, follower: Follower | None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal)
        if counting.counts is not None:
            nursery.start_soon(_dump_counts_on_signal)
        if follower is not None:
            nursery.start_soon(follow_journal, operations, follower)
        nursery.start_soon(_release_forgotten, operations)
        await pyfuse3.main(min_tasks=1, max_tasks=1)
        nursery.cancel_scope.cancel()


async def _release_forgotten(operations: AgentOperations) -> None:
    # Between requests, as every handler runs: files unlinked while the kernel
    # knew them are freed in one transaction per tick instead of one each.
    while True:
        await trio.sleep(FORGOTTEN_INTERVAL)
        operations.release_forgotten()


async def _stop_on_signal() -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


async def _dump_counts_on_signal() -> None:
    # The benchmark reads the counts of each workload: SIGUSR1 writes them now.
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            counting.dump()
