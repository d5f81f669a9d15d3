"""The disk side of a hybrid commit: each journaled step that writes the lower tree.

Every step can be redone safely after a crash: staging rewrites its file,
removal of something already gone and placing of something already placed
do nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable

from vfs.backends.host import make_node
from vfs.backends.hybrid import staging
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.diff import Action


class DiskSteps:
    """The disk side of each journaled step; every one can be redone safely."""

    def __init__(self, backend: HybridBackend, place: staging.Staging) -> None:
        self.backend = backend
        self.lower = backend.lower
        self._fds: dict[str, int] = {}
        self._staging_fd = -1
        self._place = place

    def _parent_fd(self, path: str) -> tuple[int, str]:
        """An open directory descriptor for ``path``'s parent (created if missing)."""
        parent, _, name = path.rpartition("/")
        built = ""
        for part in parent.split("/") if parent else []:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=self._fd_of(built))
            built = f"{built}/{part}" if built else part
        return self._fd_of(parent), name

    def _fd_of(self, path: str) -> int:
        # Cached only while placing: directories are removed in an earlier phase.
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = self.lower.open(path, os.O_RDONLY | os.O_DIRECTORY)
        return fd

    def run(self, action: Action) -> None:
        """Carry out one disk step of the journal."""
        steps: dict[str, Callable[[Action], None]] = {
            "stage": self.stage,
            "remove": self.remove,
            "mkdir": self.mkdir,
            "place": self.place,
            "chmod": self.chmod,
        }
        step = steps.get(action.op)
        if step is None:
            raise ValueError(f"unknown commit step {action.op!r} in the journal")
        step(action)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._staging_fd >= 0:
            os.close(self._staging_fd)
            self._staging_fd = -1

    def _staging(self) -> int:
        if self._staging_fd < 0:
            self._staging_fd = self._place.open(self.backend)
        return self._staging_fd

    def stage(self, action: Action) -> None:
        name = str(action.staged)
        staging = self._staging()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=staging)
        if action.source is not None:
            st = self.lower.lstat_or_none(action.source)
            if st is None:
                return  # deleted on disk since the plan: the overlay no longer shows it
            if stat.S_ISLNK(st.st_mode):
                os.symlink(self.lower.readlink(action.source), name, dir_fd=staging)
                return
            if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device: never opened
                make_node(name, st.st_mode, st.st_rdev, action.mtime_ns, dir_fd=staging)
                return
            with self.lower.fd(action.source, os.O_RDONLY) as src:
                self._write(name, action, lambda offset: os.pread(src, 1 << 20, offset))
            return
        ino = int(action.ino or 0)
        try:
            attr = self.backend.getattr(ino)
        except FileNotFoundError:
            return  # deleted from the overlay since the plan: nothing to place
        if attr.is_link:
            os.symlink(self.backend.readlink(ino), name, dir_fd=staging)
            return
        if attr.is_special:
            mode = stat.S_IFMT(attr.mode) | (action.mode if action.mode is not None else 0o644)
            make_node(name, mode, attr.rdev, action.mtime_ns, dir_fd=staging)
            return
        with self.backend.open(ino) as handle:
            self._write(name, action, lambda offset: handle.read(offset, 1 << 20))

    def _write(self, name: str, action: Action, read: Callable[[int], bytes]) -> None:
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
            dir_fd=self._staging(),
        )  # fmt: skip
        try:
            offset = 0
            while data := read(offset):
                os.pwrite(fd, data, offset)
                offset += len(data)
            os.fchmod(fd, action.mode if action.mode is not None else 0o644)
            if action.mtime_ns is not None:
                os.utime(fd, ns=(time.time_ns(), action.mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, action: Action) -> None:
        head, _, name = action.path.rpartition("/")
        try:
            parent = self.lower.open(head, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return  # its directory is gone already
            raise
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    def mkdir(self, action: Action) -> None:
        parent, name = self._parent_fd(action.path)
        mode = action.mode if action.mode is not None else 0o755
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                raise
        with self.lower.fd(action.path, os.O_RDONLY | os.O_DIRECTORY) as fd:
            os.fchmod(fd, mode)

    def place(self, action: Action) -> None:
        staging = self._staging()
        try:
            os.lstat(str(action.staged), dir_fd=staging)
        except FileNotFoundError:
            return  # renamed into place before a crash
        parent, name = self._parent_fd(action.path)
        os.rename(str(action.staged), name, src_dir_fd=staging, dst_dir_fd=parent)
        os.fsync(parent)

    def chmod(self, action: Action) -> None:
        try:
            fd = self.lower.open(action.path, os.O_RDONLY)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                return
            raise
        try:
            if action.mode is not None:
                os.fchmod(fd, action.mode)
            if action.mtime_ns is not None:
                os.utime(fd, ns=(time.time_ns(), action.mtime_ns))
        finally:
            os.close(fd)
