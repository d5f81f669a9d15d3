"""Which inodes some process has open, visible to every process of the agent.

A process that opens an inode holds a shared open-file-description lock on
byte ``ino`` of a lock file beside the database. Before freeing an inode that
lost its last name, a process claims that byte exclusively: if anyone else
holds it, the inode stays (nameless) until its last holder closes it. The
claim lasts until the transaction that frees the inode has ended, so an opener
that looked the inode up before the free cannot hold it in between: its hold
fails, or it comes after the commit and finds the inode gone. The kernel drops
the locks of a process that dies, so a crash leaves nothing held.
"""

from __future__ import annotations

import errno
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

    def _setlk(self, kind: int, ino: int) -> None:
        request = struct.pack(_FLOCK, kind, os.SEEK_SET, ino, 1, 0)
        with self._lock:
            fcntl.fcntl(self._descriptor(), fcntl.F_OFD_SETLK, request)

    def _try(self, kind: int, ino: int) -> bool:
        try:
            self._setlk(kind, ino)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def hold(self, ino: int) -> bool:
        """Mark ``ino`` open here; False when another process is freeing it."""
        return self._try(fcntl.F_RDLCK, ino)

    def claim(self, ino: int) -> bool:
        """Take ``ino`` for freeing; False when another process has it open.

        Only for an inode this descriptor does not hold: a claim over one's own
        hold would convert it. :meth:`release` ends the claim.
        """
        return self._try(fcntl.F_WRLCK, ino)

    def release(self, ino: int) -> None:
        self._setlk(fcntl.F_UNLCK, ino)

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._fd >= 0:
                os.close(self._fd)
            self._fd, self._pid = -1, -1
