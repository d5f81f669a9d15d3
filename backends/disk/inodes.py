"""What disk mode remembers of host inodes: their numbers, the workspace paths
it has seen for each, and the handles open on each.

Inode numbers are the host's ``st_ino``; the workspace root is :data:`ROOT_INO`
and a host file whose ``st_ino`` is 1 is :data:`HOST_INO_ONE`.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from vfs.backends.base import ROOT_INO, Attr

#: the inode number reported for a host file whose st_ino is 1 (ROOT_INO is taken)
HOST_INO_ONE = (1 << 63) - 2


class OpenFile(Protocol):
    """An open host file of the workspace."""

    ino: int
    fd: int
    #: the workspace path it was opened at (it may have lost that name since)
    path: str

    def close(self) -> None: ...


class InodeMap:
    """Inode numbers of the host tree under one root, and where each was seen."""

    def __init__(self, root: os.stat_result) -> None:
        self.root_id = (root.st_dev, root.st_ino)
        self._paths: dict[int, set[str]] = {}
        self._inos: dict[str, int] = {}
        self._handles: dict[int, set[OpenFile]] = {}
        self._lock = threading.RLock()

    def ino_of(self, st: os.stat_result) -> int:
        """The inode number of host object ``st``."""
        if (st.st_dev, st.st_ino) == self.root_id:
            return ROOT_INO
        return HOST_INO_ONE if st.st_ino == ROOT_INO else st.st_ino

    def attr_of(self, st: os.stat_result) -> Attr:
        """The attributes of host object ``st``."""
        return Attr(
            ino=self.ino_of(st), mode=st.st_mode, nlink=st.st_nlink, uid=st.st_uid,
            gid=st.st_gid, size=st.st_size, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns, btime_ns=st.st_ctime_ns, rdev=st.st_rdev,
        )  # fmt: skip

    def learned(self, st: os.stat_result, rel: str) -> Attr:
        """Host object ``st`` was found at workspace path ``rel``: remember it there."""
        attr = self.attr_of(st)
        # Most lookups find what was known; a dict read needs no lock under the GIL.
        if attr.ino != ROOT_INO and self._inos.get(rel) != attr.ino:
            with self._lock:
                if self._inos.get(rel) != attr.ino:  # another thread may have just learned it
                    self.drop_path(rel)
                    self._inos[rel] = attr.ino
                    self._paths.setdefault(attr.ino, set()).add(rel)
        return attr

    def paths_of(self, ino: int) -> list[str]:
        """The workspace paths ``ino`` was seen at, sorted; each may be stale."""
        with self._lock:
            return sorted(self._paths.get(ino, ()))

    def drop_path(self, rel: str) -> None:
        """Nothing is known to be at ``rel`` any more."""
        with self._lock:
            ino = self._inos.pop(rel, None)
            if ino is not None:
                paths = self._paths.get(ino)
                if paths is not None:
                    paths.discard(rel)
                    if not paths:
                        del self._paths[ino]

    def drop_tree(self, rel: str) -> None:
        """Nothing is known to be at ``rel`` or below it any more."""
        with self._lock:
            for path, _ino in self._subtree(rel):
                self.drop_path(path)

    def _subtree(self, rel: str) -> list[tuple[str, int]]:
        prefix = rel + "/"
        return [(p, i) for p, i in self._inos.items() if p == rel or p.startswith(prefix)]

    def move_paths(self, moves: list[tuple[str, str]]) -> None:
        """Rename mapped paths: each ``(old, new)`` moves ``old`` and all below it."""
        with self._lock:
            moved = []
            for old, new in moves:
                for path, ino in self._subtree(old):
                    moved.append((new + path[len(old) :], ino))
                    self.drop_path(path)
            for _old, new in moves:
                for path, _ino in self._subtree(new):
                    self.drop_path(path)
            for path, ino in moved:
                self._inos[path] = ino
                self._paths.setdefault(ino, set()).add(path)

    def forget(self, ino: int) -> None:
        """Forget every path of ``ino``."""
        with self._lock:
            for rel in self._paths.pop(ino, set()):
                self._inos.pop(rel, None)

    # -- open handles ------------------------------------------------------------

    def opened(self, handle: OpenFile) -> None:
        with self._lock:
            self._handles.setdefault(handle.ino, set()).add(handle)

    def closed(self, handle: OpenFile) -> None:
        with self._lock:
            handles = self._handles.get(handle.ino)
            if handles is not None:
                handles.discard(handle)
                if not handles:
                    del self._handles[handle.ino]

    def reopen(self, ino: int) -> tuple[int, str] | None:
        """A new descriptor of ``ino`` from one of its open handles, and the path that
        handle was opened at; None if it has none. It reaches the file even after
        its last name is gone."""
        with self._lock:  # a handle unregisters before it closes its descriptor
            handle = next(iter(self._handles.get(ino, ())), None)
            return None if handle is None else (os.dup(handle.fd), handle.path)

    def open_handles(self) -> list[OpenFile]:
        with self._lock:
            return [h for hs in self._handles.values() for h in hs]
