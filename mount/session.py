"""Serve one agent's workspace at a mount point until it is unmounted or signalled."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import pyfuse3
import trio

from vfs.mount.operations import DEFAULT_CACHE_TIMEOUT, AgentOperations
from vfs.state.mounts import MountTable
from vfs.workspace import Workspace

log = logging.getLogger("agentvfs.mount")

#: The filesystem type the kernel shows (``fuse.agentvfs`` in /proc/mounts).
SUBTYPE = "agentvfs"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
    cache_timeout: float = DEFAULT_CACHE_TIMEOUT,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount ``agent`` at ``mountpoint`` and serve requests until unmounted.

    Returns after ``fusermount3 -u``, ``vfs umount``, or SIGTERM/SIGINT/SIGHUP;
    every open file is flushed and the mount is gone by then. ``on_ready`` is
    called once the kernel has the mount.
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
        operations = AgentOperations(workspace.backend, cache_timeout=cache_timeout)
        pyfuse3.init(
            operations, str(where), fuse_options(agent, read_only=read_only, extra=options)
        )
        try:
            if on_ready is not None:
                on_ready()
            trio.run(_serve_until_stopped)
        finally:
            operations.close_all()
            pyfuse3.close(unmount=True)
    finally:
        table.remove(where)
        workspace.close()


async def _serve_until_stopped() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal)
        await pyfuse3.main(min_tasks=1, max_tasks=1)
        nursery.cancel_scope.cancel()


async def _stop_on_signal() -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return
