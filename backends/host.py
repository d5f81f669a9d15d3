"""Whether a process that recorded itself somewhere is still alive."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as status:
            # The state letter follows the parenthesised command name.
            return status.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return True
