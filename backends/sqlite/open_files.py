"""The files one process has open in an agent's file tables.

Reads and attribute queries of an inode must see the writes its open handles
still buffer, and an inode that lost its last name is freed only after its
last close in any process: :class:`OpenFiles` keeps this process's handles per
inode and holds the cross-process lock (:class:`InodeLocks`) while one is open.
"""

from __future__ import annotations

import errno
import threading
from typing import Protocol

from vfs.backends.base import close_all
from vfs.backends.sqlite.inode_locks import InodeLocks


class BufferedFile(Protocol):
    """An open file that may hold writes not yet in the tables."""

    ino: int
    #: the largest end offset among buffered writes; 0 when nothing is buffered
    end: int
    #: when the last buffered write happened (ns)
    written_ns: int

    def flush(self) -> None: ...

    def close(self) -> None: ...


class OpenFiles:
    """This process's open handles, per inode."""

    def __init__(self, locks: InodeLocks) -> None:
        #: which inodes some process has open, across processes
        self.locks = locks
        self._handles: dict[int, list[BufferedFile]] = {}
        self._freeing: set[int] = set()  # inodes a transaction here is freeing
        self._lock = threading.RLock()

    def register(self, handle: BufferedFile) -> None:
        """``handle`` opened its inode; other processes see it open from now on.

        ``FileNotFoundError`` when a transaction (here or in another process)
        is freeing the inode: the caller looked it up before the free.
        """
        ino = handle.ino
        with self._lock:
            handles = self._handles.get(ino)
            if ino in self._freeing or (not handles and not self.locks.hold(ino)):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")
            self._handles.setdefault(ino, []).append(handle)

    def claim(self, ino: int) -> bool:
        """Reserve ``ino`` for freeing, unless any process has it open.

        Until :meth:`unclaim`, which the freeing transaction's end calls, no
        handle can open it (in this process: :meth:`register` refuses; in
        others: the inode lock), so an opener that looked it up before the
        free fails and looks the name up again instead of keeping an inode
        that is about to vanish.
        """
        with self._lock:
            if ino in self._freeing:
                return True
            if self._handles.get(ino) or not self.locks.claim(ino):
                return False
            self._freeing.add(ino)
            return True

    def unclaim(self, ino: int) -> None:
        """The transaction that claimed ``ino`` has ended."""
        with self._lock:
            if ino in self._freeing:
                self._freeing.discard(ino)
                self.locks.release(ino)

    def unregister(self, handle: BufferedFile) -> bool:
        """``handle`` closed; returns whether it was the last of its inode here."""
        with self._lock:
            handles = self._handles.get(handle.ino, [])
            if handle in handles:
                handles.remove(handle)
            if not handles:
                self._handles.pop(handle.ino, None)
                self.locks.release(handle.ino)
            return not handles

    def is_open(self, ino: int) -> bool:
        """Whether this process has ``ino`` open."""
        # Asked on every path lookup; one dict read is atomic under the GIL, and
        # a handle opened concurrently races the lookup either way.
        return bool(self._handles.get(ino))

    def handles(self, ino: int | None = None) -> list[BufferedFile]:
        """The open handles of ``ino`` in this process (of every inode with None)."""
        with self._lock:
            if ino is None:
                return [h for hs in self._handles.values() for h in hs]
            return list(self._handles.get(ino, ()))

    def has_pending_writes(self, ino: int) -> bool:
        """Whether writes to ``ino`` wait in a buffer: its stored size is not final."""
        return any(h.end for h in self.handles(ino))

    def flush(self, ino: int) -> None:
        """Store the writes this process's handles buffered for ``ino``."""
        for handle in self.handles(ino):
            handle.flush()

    def close(self) -> None:
        """Close every handle this process holds, then the inode lock file; the first
        failure to close (a write that could not land) is raised after all that."""
        try:
            close_all(self.handles())
        finally:
            self.locks.close()
