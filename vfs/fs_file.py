"""``AgentFile``: a file of an agent's workspace opened through fsspec."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fsspec.spec import AbstractBufferedFile

from vfs.backends.base import Backend, Handle, rename_error


class AgentFileSystem(Protocol):
    """What a file needs of ``vfs.fs.AgentFileSystem``, which opens it (this
    module does not import it back)."""

    backend: Backend

    def parent_for_write(self, path: str) -> tuple[int, str]: ...

    def exists(self, path: str) -> bool: ...

    def isdir(self, path: str) -> bool: ...


FILE_MODE = 0o644


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _names_file(method: _Method) -> _Method:
    """Errors from the engine name the file's path, not ``inode N``."""

    @functools.wraps(method)
    def wrapper(self: AgentFile, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            rename_error(exc, self.path)
            raise

    return wrapper  # type: ignore[return-value]


class AgentFile(AbstractBufferedFile):
    """A file opened through fsspec.

    Reads fetch byte ranges from an open backend handle (nothing loads the
    whole file). Writes stream block by block into a nameless file that is
    published under its name when the file is committed, so a reader sees the
    old content or the new, never a mix.
    """

    fs: AgentFileSystem

    def __init__(self, fs: AgentFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self._handle: Handle | None = None
        self._target: tuple[int, str] | None = None
        backend = fs.backend
        if mode == "rb":
            self._handle, attr = backend.open_path(path)
            kwargs.setdefault("cache_type", "readahead")
            super().__init__(fs, path, mode, size=attr.size, **kwargs)
            return
        if mode == "xb" and fs.exists(path):
            raise FileExistsError(errno.EEXIST, "File exists", path)
        if fs.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        super().__init__(fs, path, mode, **kwargs)
        if mode == "ab":
            try:
                self._open_for_append()
            except BaseException:
                self.closed = True  # nothing was written: __del__ must not flush
                raise

    def _open_for_append(self) -> None:
        backend = self.fs.backend
        try:
            self._handle, attr = backend.open_path(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            parent, name = self.fs.parent_for_write(self.path)
            self._handle, attr = backend.create(parent, name, FILE_MODE, os.getuid(), os.getgid())
        self.loc = attr.size

    @_names_file
    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self._handle is not None
        return self._handle.read(start, end - start)

    @_names_file
    def _initiate_upload(self) -> None:
        if self.mode == "ab":
            return
        parent, name = self.fs.parent_for_write(self.path)
        self._target = (parent, name)
        self._handle = self.fs.backend.tmpfile(parent, FILE_MODE)

    @_names_file
    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._handle is not None
        data = self.buffer.getvalue()
        if data:
            self._handle.write(self.offset, data)
        # Every block lands in the database now, so memory stays bounded by
        # the block size whatever the file's size.
        self._handle.flush()
        if final and self.autocommit:
            self.commit()
        return True

    @property
    def unpublished(self) -> Handle | None:
        """The nameless file this write fills until :meth:`commit` publishes it."""
        return self._handle if self._target is not None else None

    @_names_file
    def commit(self) -> None:
        handle = self._handle
        if handle is None:
            return
        try:
            if self.mode != "ab":
                assert self._target is not None
                parent, name = self._target
                with self.fs.backend.transaction():
                    if self.mode == "xb" and self.fs.backend.lookup_or_none(parent, name):
                        raise FileExistsError(errno.EEXIST, "File exists", self.path)
                    self.fs.backend.publish(handle, parent, name)
        finally:
            handle.close()
            self._handle = None

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()  # a nameless file is freed on close
            self._handle = None

    @_names_file
    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.mode == "rb" and self._handle is not None:
                self._handle.close()
                self._handle = None
