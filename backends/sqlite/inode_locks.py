"""Which inodes some process has open, visible to every process of the agent.

A process that opens an inode holds a shared open-file-description lock on
byte ``ino`` of a lock file beside the database. Before freeing an inode that
lost its last name, a process asks whether anyone else holds that byte: if so,
the inode stays (nameless) until its last holder closes it. The kernel drops
the locks of a process that dies, so a crash leaves nothing held.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from pathlib import Path

_FLOCK = "hhqqi4x"  # struct flock on Linux: type, whence, start, len, pid


class InodeLocks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._pid = -1
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        # After fork the child must not share (and so release) the parent's locks.
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _fcntl(self, command: int, kind: int, ino: int) -> int:
        request = struct.pack(_FLOCK, kind, os.SEEK_SET, ino, 1, 0)
        with self._lock:
            answer = fcntl.fcntl(self._descriptor(), command, request)
        return int(struct.unpack(_FLOCK, answer)[0])

    def hold(self, ino: int) -> None:
        self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_RDLCK, ino)

    def release(self, ino: int) -> None:
        self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_UNLCK, ino)

    def held_elsewhere(self, ino: int) -> bool:
        """Whether another process (or another backend object) has ``ino`` open."""
        return self._fcntl(fcntl.F_OFD_GETLK, fcntl.F_WRLCK, ino) != fcntl.F_UNLCK

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._fd >= 0:
                os.close(self._fd)
            self._fd, self._pid = -1, -1
