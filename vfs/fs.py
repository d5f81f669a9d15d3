"""``AgentFileSystem``: an agent's workspace as an fsspec filesystem.

URLs are ``agentvfs://<agent>/<path>``; an instance is bound to one agent and
its paths are rooted at that agent's ``/``. Every call goes to the workspace's
backend, so the same code serves sqlite, disk and hybrid mode.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from fsspec.transaction import Transaction

from vfs.backends.base import Attr, Backend, Handle, naming
from vfs.workspace import Workspace

PROTOCOL = "agentvfs"
FILE_MODE = 0o644
DIR_MODE = 0o755
COPY_BLOCK = 1 << 20

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _names_path(method: _Method) -> _Method:
    """Errors from the engine name the path the caller gave, not ``inode N``."""

    @functools.wraps(method)
    def wrapper(self: AgentFileSystem, path: Any, *args: Any, **kwargs: Any) -> Any:
        with naming(self._strip_protocol(path) if isinstance(path, str) else str(path)):
            return method(self, path, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _names_file(method: _Method) -> _Method:
    """:func:`_names_path` for the methods of an open file."""

    @functools.wraps(method)
    def wrapper(self: AgentFile, *args: Any, **kwargs: Any) -> Any:
        with naming(self.path):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class AgentTransaction(Transaction):
    """``fs.transaction``: files publish at the end, inside one backend transaction.

    In sqlite and hybrid mode that is one SQLite write transaction, so the
    block's writes land together or not at all.
    """

    def start(self) -> None:
        super().start()
        self._scope = self.fs.backend.transaction()
        self._scope.__enter__()

    def complete(self, commit: bool = True) -> None:
        scope = self._scope
        try:
            super().complete(commit=commit)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if commit:
            scope.__exit__(None, None, None)
        else:
            error = OSError(errno.ECANCELED, "transaction discarded")
            try:
                scope.__exit__(OSError, error, None)
            except OSError as raised:
                if raised is not error:
                    raise


class AgentFileSystem(AbstractFileSystem):
    """fsspec filesystem over one agent's workspace.

    Parameters
    ----------
    agent:
        The agent id; taken from the URL's host part for ``agentvfs://`` URLs.
    home:
        The state directory (default: ``$AGENT_VFS_HOME`` or the user data dir).
    create:
        Create the agent (in ``mode``, default ``sqlite``) if it does not exist.
    mode:
        Workspace mode for a new agent; an existing agent opens only in its own mode.
    auto_mkdir:
        Create missing parent directories when writing a file (default true,
        as object stores and fsspec's local filesystem with auto_mkdir do).
    """

    protocol = PROTOCOL
    root_marker = "/"
    transaction_type = AgentTransaction

    def __init__(
        self,
        agent: str | None = None,
        home: str | os.PathLike[str] | None = None,
        create: bool = False,
        mode: str | None = None,
        auto_mkdir: bool = True,
        workspace: Workspace | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if workspace is None:
            if not agent:
                raise ValueError("agentvfs needs an agent: agentvfs://<agent>/<path>")
            workspace = Workspace.open(agent, home, create=create, mode=mode)
        self.workspace = workspace
        self.agent = workspace.agent
        self.auto_mkdir = auto_mkdir

    @property
    def backend(self) -> Backend:
        return self.workspace.backend

    # -- paths -------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :].partition("/")[2]
        elif path.startswith(f"{PROTOCOL}:"):
            path = path[len(PROTOCOL) + 1 :]
        path = "/" + path.lstrip("/")
        return path.rstrip("/") or "/"

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        if path.startswith(f"{PROTOCOL}://"):
            agent = path[len(PROTOCOL) + 3 :].partition("/")[0]
            if agent:
                return {"agent": agent}
        return {}

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{self.agent}{self._strip_protocol(name)}"

    def _resolve(self, path: str, follow: bool = True) -> Attr:
        return self.backend.resolve(self._strip_protocol(path), follow=follow)

    def _child(self, path: str, name: str) -> str:
        return f"{path.rstrip('/')}/{name}"

    # -- metadata ------------------------------------------------------------

    def _info(self, path: str, attr: Attr) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": path,
            "size": attr.size if not attr.is_dir else 0,
            "type": "directory" if attr.is_dir else "file" if attr.is_file else "other",
            "mode": attr.mode,
            "uid": attr.uid,
            "gid": attr.gid,
            "mtime": attr.mtime_ns / 1e9,
            "created": attr.btime_ns / 1e9,
            "ino": attr.ino,
            "nlink": attr.nlink,
            "islink": attr.is_link,
        }
        if attr.is_link:
            # Targets are bytes; one that is not UTF-8 shows escaped, not as an error.
            info["destination"] = self.backend.readlink(attr.ino).decode(
                "utf-8", "backslashreplace"
            )
            try:
                target = self._resolve(path, follow=True)
            except OSError:
                pass  # a dangling or escaping link stays type "other"
            else:
                # A link to a directory stays "other": walks, find and rm -r
                # must never descend through it (like find -P and rm -r).
                if target.is_file:
                    info["type"] = "file"
                    info["size"] = target.size
        return info

    @_names_path
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        return self._info(path, self._resolve(path, follow=False))

    @_names_path
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        attr = self._resolve(path)
        if not attr.is_dir:
            entries = [self._info(path, self._resolve(path, follow=False))]
        else:
            entries = [
                self._info(self._child(path, name), child)
                for name, child, _ in self.backend.readdir(attr.ino)
            ]
        return entries if detail else [e["name"] for e in entries]

    @_names_path
    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self._resolve(path).mtime_ns / 1e9, tz=UTC)

    @_names_path
    def created(self, path: str) -> datetime:
        return datetime.fromtimestamp(self._resolve(path).btime_ns / 1e9, tz=UTC)

    def checksum(self, path: str) -> int:
        return int(self.ukey(path), 16)

    @_names_path
    def ukey(self, path: str) -> str:
        """A digest of the file's content hashes: it changes when the content does."""
        attr = self._resolve(path)
        if attr.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not attr.is_file:
            raise OSError(errno.EINVAL, "not a regular file", path)
        return self.backend.checksum(attr.ino)

    def islink(self, path: str) -> bool:
        try:
            return self._resolve(path, follow=False).is_link
        except FileNotFoundError:
            return False

    # -- directories ---------------------------------------------------------

    @_names_path
    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if create_parents:
            self.makedirs(path, exist_ok=False)
            return
        parent, name = self.backend.resolve_parent(path)
        self.backend.mkdir(parent, name, DIR_MODE, os.getuid(), os.getgid())

    @_names_path
    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        backend = self.backend
        with backend.transaction():
            try:
                attr = self._resolve(path)
            except FileNotFoundError:
                pass
            else:
                if not attr.is_dir:
                    raise FileExistsError(errno.EEXIST, "File exists", path)
                if exist_ok:
                    return
                raise FileExistsError(errno.EEXIST, "File exists", path)
            prefix = ""
            for name in [p for p in path.split("/") if p]:
                prefix = f"{prefix}/{name}"
                try:
                    found = backend.resolve(prefix, follow=True)
                except FileNotFoundError:
                    parent, leaf = backend.resolve_parent(prefix)
                    found = backend.mkdir(parent, leaf, DIR_MODE, os.getuid(), os.getgid())
                if not found.is_dir:
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", prefix)

    @_names_path
    def rmdir(self, path: str) -> None:
        parent, name = self.backend.resolve_parent(self._strip_protocol(path))
        self.backend.rmdir(parent, name)

    # -- files ---------------------------------------------------------------

    @_names_path
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> AgentFile:
        return AgentFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    @_names_path
    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        backend = self.backend
        if start is None and end is None:
            return backend.read_file(path)
        with backend.snapshot():
            attr = backend.resolve(path, follow=True)
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            if not attr.is_file:
                raise OSError(errno.EINVAL, "not a regular file", path)
            size = attr.size
            begin = 0 if start is None else (start if start >= 0 else max(0, size + start))
            stop = size if end is None else (end if end >= 0 else max(0, size + end))
            if stop <= begin:
                return b""
            return backend.read(attr.ino, begin, stop - begin)

    @_names_path
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        backend = self.backend
        if self._intrans and not backend.transactional:
            # Without a database transaction, defer the write to the commit.
            with self.open(path, "xb" if mode == "create" else "wb") as f:
                f.write(value)
            return
        with backend.transaction():
            parent, name = self._parent_for_write(path)
            if mode == "create" and backend.lookup_or_none(parent, name) is not None:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            backend.write_file(parent, name, bytes(value), FILE_MODE)

    def _parent_for_write(self, path: str) -> tuple[int, str]:
        """The directory that will hold ``path`` (created when auto_mkdir), and the name.

        A final symlink is written through, as ``open(path, "w")`` does.
        """
        try:
            return self.backend.resolve_parent(path, follow=True)
        except FileNotFoundError:
            head = path.rpartition("/")[0]
            if not (self.auto_mkdir and head):
                raise
        self.makedirs(head, exist_ok=True)
        return self.backend.resolve_parent(path, follow=True)

    @_names_path
    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if not truncate and self.exists(path):
            now = time.time_ns()
            self.backend.setattr(self._resolve(path).ino, atime_ns=now, mtime_ns=now)
            return
        self.pipe_file(path, b"")

    @_names_path
    def rm_file(self, path: str) -> None:
        # Deleting must work on a full disk, to make room: see Database.spending_reserve.
        self.workspace.db.spending_reserve(lambda: self._rm_file(path))

    def _rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        parent, name = self.backend.resolve_parent(path)
        attr = self.backend.lookup(parent, name)
        if attr.is_dir:
            self.backend.rmdir(parent, name)
        else:
            self.backend.unlink(parent, name)
        self.invalidate_cache(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)

        def remove() -> None:
            with self.backend.transaction():
                for p in sorted(paths, key=len, reverse=True):
                    self.rm_file(p)

        self.workspace.db.spending_reserve(remove)

    @_names_path
    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1 = self._strip_protocol(path1)
        path2 = self._strip_protocol(path2)
        source = self._resolve(path1)
        if source.is_dir:
            self.makedirs(path2, exist_ok=True)
            return
        with self.backend.transaction():
            parent, name = self._parent_for_write(path2)
            self.backend.copy_file(source.ino, parent, name)
        self.invalidate_cache(path2)

    @_names_path
    def mv(
        self, path1: Any, path2: Any, recursive: bool = False, maxdepth: Any = None, **kwargs: Any
    ) -> None:
        """Rename in place when one path moves to one path; else copy and delete."""
        if isinstance(path1, str) and isinstance(path2, str) and not self._has_magic(path1):
            source = self._strip_protocol(path1)
            target = self._strip_protocol(path2)
            if self.isdir(target) and not self._resolve(target, follow=False).is_link:
                target = self._child(target, source.rsplit("/", 1)[-1])
            self._resolve(source, follow=False)  # a missing source: one error naming it
            if recursive or not self.isdir(source):
                with self.backend.transaction():
                    old_parent, old_name = self.backend.resolve_parent(source)
                    head = target.rpartition("/")[0]
                    if self.auto_mkdir and head:
                        self.makedirs(head, exist_ok=True)
                    new_parent, new_name = self.backend.resolve_parent(target)
                    self.backend.rename(old_parent, old_name, new_parent, new_name)
                self.invalidate_cache()
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, **kwargs: Any) -> None:
        """Copy to the host; a recursive copy copies symlinks as symlinks, like ``cp -r``."""
        super().get(rpath, lpath, recursive=recursive, keep_links=recursive, **kwargs)

    def get_file(
        self, rpath: str, lpath: Any, *args: Any, keep_links: bool = False, **kwargs: Any
    ) -> None:
        if keep_links and isinstance(lpath, (str, os.PathLike)):
            attr = self._resolve(rpath, follow=False)
            if attr.is_link:
                target = os.fsdecode(self.backend.readlink(attr.ino))
                os.makedirs(os.path.dirname(os.fspath(lpath)) or ".", exist_ok=True)
                if os.path.lexists(lpath) and not os.path.isdir(lpath):
                    os.unlink(lpath)  # replaced, as a copied file would be
                os.symlink(target, lpath)
                return
        super().get_file(rpath, lpath, *args, **kwargs)

    @staticmethod
    def _has_magic(path: str) -> bool:
        return any(c in path for c in "*?[")

    def symlink(self, target: str, path: str) -> None:
        """Create ``path`` as a symlink to ``target`` (a path relative to ``path``'s directory)."""
        parent, name = self.backend.resolve_parent(self._strip_protocol(path))
        self.backend.symlink(parent, name, os.fsencode(target), os.getuid(), os.getgid())

    @_names_path
    def chmod(self, path: str, mode: int) -> None:
        self.backend.setattr(self._resolve(path).ino, mode=stat.S_IMODE(mode))


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
            attr = backend.resolve(path, follow=True)
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            self._handle = backend.open(attr.ino)
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
            attr = backend.resolve(self.path, follow=True)
        except FileNotFoundError:
            parent, name = self.fs._parent_for_write(self.path)
            self._handle, attr = backend.create(parent, name, FILE_MODE, os.getuid(), os.getgid())
        else:
            if attr.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", self.path)
            self._handle = backend.open(attr.ino, os.O_WRONLY | os.O_APPEND)
        self.loc = attr.size

    @_names_file
    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self._handle is not None
        return self._handle.read(start, end - start)

    @_names_file
    def _initiate_upload(self) -> None:
        if self.mode == "ab":
            return
        parent, name = self.fs._parent_for_write(self.path)
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
