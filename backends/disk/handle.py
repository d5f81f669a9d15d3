"""Open files of disk mode: a host file descriptor per handle."""

from __future__ import annotations

import contextlib
import os

from vfs.backends.base import Attr, Backend, Handle
from vfs.backends.disk.errors import reported
from vfs.backends.disk.inodes import InodeMap
from vfs.backends.host import fd_path


class DiskHandle(Handle):
    """An open host file descriptor; an unlinked file stays usable through it."""

    def __init__(
        self,
        backend: Backend,
        inodes: InodeMap,
        fd: int,
        ino: int,
        path: str,
        *,
        writable: bool,
        append: bool = False,
        temp: tuple[int, str] | None = None,
    ) -> None:
        self.backend = backend
        self.inodes = inodes
        self.fd = fd
        self.ino = ino
        self.path = path
        self.writable = writable
        self.append = append
        #: (directory fd, name) of a tmpfile until it is published
        self.temp = temp
        self.closed = False
        inodes.opened(self)

    def read(self, offset: int, size: int) -> bytes:
        with reported(self.path):
            data = os.pread(self.fd, size, offset)
            if len(data) == size or not data:
                return data
            parts = [data]
            while len(data) < size:  # a short read before the end: keep going
                more = os.pread(self.fd, size - len(data), offset + len(data))
                if not more:
                    break
                parts.append(more)
                data = b"".join(parts)
            return data

    def _make_writable(self) -> None:
        self.backend.check_writable()
        if not self.writable:
            flags = os.O_RDWR | os.O_CLOEXEC | (os.O_APPEND if self.append else 0)
            with reported(self.path):
                fd = os.open(fd_path(self.fd), flags)
            os.dup2(fd, self.fd)
            os.close(fd)
            self.writable = True

    def write(self, offset: int, data: bytes) -> int:
        self._make_writable()
        view = memoryview(data)
        done = 0
        with reported(self.path):
            # With O_APPEND the kernel puts every write at the end, whatever the offset.
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
        return done

    def truncate(self, size: int) -> None:
        self._make_writable()
        with reported(self.path):
            os.ftruncate(self.fd, size)

    def flush(self) -> None:
        """Writes go straight to the host file; there is nothing to flush."""

    def fsync(self, datasync: bool = False) -> None:
        with reported(self.path):
            (os.fdatasync if datasync else os.fsync)(self.fd)

    def getattr(self) -> Attr:
        return self.inodes.attr_of(os.fstat(self.fd))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inodes.closed(self)
        try:
            if self.temp is not None:  # never published: take the temp name away again
                dir_fd, name = self.temp
                with contextlib.suppress(OSError):
                    if (
                        os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
                        == os.fstat(self.fd).st_ino
                    ):
                        os.unlink(name, dir_fd=dir_fd)
                os.close(dir_fd)
                self.temp = None
        finally:
            os.close(self.fd)
