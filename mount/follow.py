"""Keep the kernel's caches true to the change journal while the mount runs.

Other processes (fsspec, the CLI, another program) change the workspace behind
the kernel's back. In sqlite and hybrid mode every such change is a journal row
(``backends/journal.py``); a trio task polls the journal about every
:data:`POLL_INTERVAL` seconds and tells the kernel exactly which names and
inodes to forget, so the kernel may cache everything else for long.
"""

from __future__ import annotations

import contextlib
import logging
import os

import pyfuse3
import trio

from vfs.backends.journal import Follower
from vfs.mount.operations import AgentOperations

log = logging.getLogger("agentvfs.mount")

#: Seconds between looks at the journal: the staleness bound for changes made
#: by other processes (plus the time the kernel takes to drop its caches).
POLL_INTERVAL = 0.05


def _invalidate(entries: list[tuple[int, bytes]], inodes: list[int]) -> None:
    # Names first: a lookup after that finds the inode with fresh attributes.
    for parent, name in entries:
        with contextlib.suppress(OSError):  # ENOENT: the kernel no longer caches it
            pyfuse3.invalidate_entry(parent, name)
    for ino in inodes:
        with contextlib.suppress(OSError):
            pyfuse3.invalidate_inode(ino)


async def follow_journal(operations: AgentOperations, follower: Follower) -> None:
    """Poll ``follower`` until cancelled, invalidating what others changed."""
    own = f"mount:{os.getpid()}"
    while True:
        await trio.sleep(POLL_INTERVAL)
        try:
            missed = follower.missed
            changes = [c for c in follower.poll() if c.writer != own]
        except Exception:  # a busy or failing database must not end the mount
            log.exception("reading the change journal failed")
            continue
        if missed:
            entries, inodes = operations.handed_out()
        elif changes:
            entries, inodes = operations.changed_elsewhere(changes)
        else:
            continue
        if entries or inodes:
            # pyfuse3 forbids these inside a request handler, and with the
            # writeback cache invalidating an inode may wait for write requests
            # that this thread serves: so they run in a worker thread.
            await trio.to_thread.run_sync(_invalidate, entries, inodes)
