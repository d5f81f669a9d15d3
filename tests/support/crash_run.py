"""Run the ``vfs`` CLI and SIGKILL it at the N-th durable step boundary.

``python -m tests.support.crash_run N ARGS...`` is ``vfs ARGS...`` that dies
the way a power cut or an OOM kill would, after N steps of a resumable
operation (commit, mode switch) are durable. ``blob:N`` instead dies once
the N-th blob is in the blob store, before the row naming it commits.
"""

from __future__ import annotations

import os
import signal
import sys

from vfs.backends import steps
from vfs.cli import main


def kill_after(limit: int, *, blobs: bool = False) -> None:
    seen = 0

    def count() -> None:
        nonlocal seen
        seen += 1
        if seen >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    (steps.observe_blobs if blobs else steps.observe)(count)


if __name__ == "__main__":
    point = sys.argv[1]
    kill_after(int(point.removeprefix("blob:")), blobs=point.startswith("blob:"))
    main(sys.argv[2:], prog_name="vfs")
