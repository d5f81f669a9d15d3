"""A crash switch for tests of resumable operations (commit, mode switches).

With ``AGENT_VFS_KILL_AFTER_STEPS=N`` in the environment, the process sends
itself SIGKILL at the N-th step boundary; unset, :func:`step` does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AFTER_ENV = "AGENT_VFS_KILL_AFTER_STEPS"
_steps = 0


def step() -> None:
    """One durable step is done; die here if the environment asks for it."""
    global _steps
    limit = os.environ.get(KILL_AFTER_ENV)
    if not limit:
        return
    _steps += 1
    if _steps >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
