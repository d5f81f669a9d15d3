"""Whether a process that recorded itself somewhere is still alive."""

from __future__ import annotations

import ctypes
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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(first: os.PathLike[str] | str, second: os.PathLike[str] | str) -> None:
    """Swap two paths atomically (``renameat2(RENAME_EXCHANGE)``): at every moment
    each name holds one of the two objects, never nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first), None, str(second))
