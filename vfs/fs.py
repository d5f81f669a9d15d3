"""``AgentFileSystem``: an agent's workspace as an fsspec filesystem.

URLs are ``agentvfs://<agent>/<path>``; an instance is bound to one agent and
its paths are rooted at that agent's ``/``. A URL naming another agent is
refused, never served from this one. Every call goes to the workspace's
backend, so the same code serves sqlite, disk and hybrid mode.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from fsspec.spec import AbstractFileSystem

from vfs.backends.base import Attr, Backend, rename_error
from vfs.fs_file import FILE_MODE, AgentFile
from vfs.fs_protocol import AgentTransaction, DefaultHome, StripProtocol
from vfs.urls import PROTOCOL, make_url, normalize, split_url
from vfs.workspace import Workspace

DIR_MODE = 0o755
_TYPES = {stat.S_IFDIR: "directory", stat.S_IFREG: "file"}
COPY_BLOCK = 1 << 20

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _names_path(method: _Method) -> _Method:
    """Errors from the engine name the path the caller gave, not ``inode N``."""

    @functools.wraps(method)
    def wrapper(self: AgentFileSystem, path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, path, *args, **kwargs)
        except OSError as exc:  # not a with block: this wraps every read
            rename_error(exc, self._strip_protocol(path) if isinstance(path, str) else str(path))
            raise

    return wrapper  # type: ignore[return-value]


STORAGE_OPTIONS = ("agent", "home", "create", "mode", "read_only", "auto_mkdir", "checkpoint")


class AgentFileSystem(AbstractFileSystem):
    """fsspec filesystem over one agent's workspace.

    Storage options (anything else is refused with ``TypeError``):

    agent:
        The agent id. fsspec takes it from an ``agentvfs://AGENT/...`` URL; naming
        a different agent in the URL and in ``agent=`` is a ``ValueError``.
    home:
        The state directory (default: ``$AGENT_VFS_HOME`` or the user data dir).
    create:
        Create the agent (in ``mode``, default ``sqlite``) if it does not exist.
    mode:
        Workspace mode for a new agent; an existing agent opens only in its own mode.
    read_only:
        Open the workspace read-only: every write fails with ``OSError(EROFS)``.
    auto_mkdir:
        Create missing parent directories when writing a file (default true,
        as object stores and fsspec's local filesystem with auto_mkdir do).
    checkpoint:
        Show the files of this checkpoint, read-only, instead of the live ones
        (also reachable as ``agentvfs://AGENT/.vfs/checkpoints/NAME/PATH``).

    A path is a workspace path (``/notes/todo.md``) or a URL naming this
    filesystem's agent; a URL naming another agent raises ``ValueError``, or
    ``FileNotFoundError`` when no such agent exists.
    """

    protocol = PROTOCOL
    root_marker = "/"
    transaction_type = AgentTransaction
    _strip_protocol = StripProtocol()
    _default_home = DefaultHome()
    _extra_tokenize_attributes = ("_default_home",)

    def __init__(
        self,
        agent: str | None = None,
        home: str | os.PathLike[str] | None = None,
        create: bool = False,
        mode: str | None = None,
        read_only: bool = False,
        auto_mkdir: bool = True,
        checkpoint: str | None = None,
        workspace: Workspace | None = None,
        url_agent: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"agentvfs: unknown storage option {', '.join(map(repr, sorted(kwargs)))};"
                f" accepted: {', '.join(STORAGE_OPTIONS)}"
            )
        super().__init__()
        if agent and url_agent and agent != url_agent:
            raise ValueError(
                f"agentvfs: the URL names agent {url_agent!r} but agent={agent!r} was given;"
                " name the agent once"
            )
        agent = agent or url_agent
        if workspace is None:
            if not agent:
                raise ValueError("agentvfs needs an agent: agentvfs://<agent>/<path>")
            if create and read_only:
                raise ValueError("agentvfs: create=True and read_only=True exclude each other")
            if create and checkpoint:
                raise ValueError("agentvfs: create=True and checkpoint= exclude each other")
            workspace = Workspace.open(
                agent, home, create=create, mode=mode, read_only=read_only, checkpoint=checkpoint
            )
            if workspace.db.writer == "python":
                workspace.db.writer = "fsspec"
        self.workspace = workspace
        self.agent = workspace.agent
        self.read_only = read_only or workspace.read_only
        self.auto_mkdir = auto_mkdir

    @property
    def backend(self) -> Backend:
        return self.workspace.backend

    # -- paths -------------------------------------------------------------

    def workspace_path(self, path: Any) -> Any:
        if type(path) is str and path[:1] == "/" and path[1:2] != "/" and path[-1] != "/":
            return path  # already a workspace path: every call starts here, so it is quick
        if isinstance(path, list):
            return [self.workspace_path(p) for p in path]
        agent, rest = split_url(os.fspath(path))
        if agent is not None and agent != self.agent:
            raise self._foreign(agent, os.fspath(path))
        return normalize(rest)

    def _foreign(self, agent: str, url: str) -> Exception:
        if not self.workspace.registry.exists(agent):
            return FileNotFoundError(errno.ENOENT, f"no such agent: {agent}", url)
        return ValueError(
            f"{url} names agent {agent!r} but this filesystem is bound to agent"
            f" {self.agent!r}: open the URL with fsspec.open, or use one filesystem per agent"
        )

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        # Under its own key, so that fsspec does not merge it with an agent= option:
        # __init__ sees both and refuses a conflict.
        agent, _ = split_url(path)
        return {"url_agent": agent} if agent else {}

    @classmethod
    def _parent(cls, path: Any) -> str:
        agent, rest = split_url(os.fspath(path))
        parent = normalize(rest).rpartition("/")[0] or "/"
        return make_url(agent, parent) if agent else parent

    def unstrip_protocol(self, name: str) -> str:
        agent, rest = split_url(name)
        return make_url(agent or self.agent, rest)

    def _in_reach(self, path: Any) -> bool:
        """False for a URL of an agent that does not exist; raises for another agent's."""
        try:
            self._strip_protocol(path)
        except FileNotFoundError:
            return False
        return True

    def exists(self, path: Any, **kwargs: Any) -> bool:
        # fsspec's exists answers False for any error; another agent's URL must say so.
        return self._in_reach(path) and super().exists(path, **kwargs)

    def lexists(self, path: Any, **kwargs: Any) -> bool:
        return self._in_reach(path) and super().lexists(path, **kwargs)

    def isfile(self, path: Any) -> bool:
        return self._in_reach(path) and super().isfile(path)

    def _writable(self, path: str) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system", path)

    def open_many(self, open_files: list[Any]) -> list[Any]:
        """``with fsspec.open_files(...)``: every path is checked before any file opens,
        so a list that names another agent writes nothing."""
        for of in open_files:
            self._strip_protocol(of.path)
        return [of.__enter__() for of in open_files]

    def commit_many(self, files: list[Any]) -> None:
        """Nothing to do: each file published when its ``OpenFile`` closed."""

    def _resolve(self, path: str, follow: bool = True) -> Attr:
        return self.backend.resolve(self._strip_protocol(path), follow=follow)

    def _child(self, path: str, name: str) -> str:
        return f"{path.rstrip('/')}/{name}"

    # -- metadata ------------------------------------------------------------

    def _info(self, path: str, attr: Attr) -> dict[str, Any]:
        kind = stat.S_IFMT(attr.mode)
        info: dict[str, Any] = {
            "name": path,
            "size": 0 if kind == stat.S_IFDIR else attr.size,
            "type": _TYPES.get(kind, "other"),
            "mode": attr.mode,
            "uid": attr.uid,
            "gid": attr.gid,
            "mtime": attr.mtime_ns / 1e9,
            "created": attr.btime_ns / 1e9,
            "ino": attr.ino,
            "nlink": attr.nlink,
            "islink": kind == stat.S_IFLNK,
        }
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            info["rdev"] = attr.rdev  # a device's number; its type is "other", like a FIFO's
        if kind == stat.S_IFLNK:
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
        return self._info(path, self.backend.resolve(path, follow=False))

    @_names_path
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return list(self.iterdir(path, detail=detail))

    @_names_path
    def iterdir(self, path: str, detail: bool = True) -> Iterator[Any]:
        """``ls`` one entry at a time: a directory of any size is read page by page,
        so memory stays bounded by the page, not the directory."""
        path = self._strip_protocol(path)
        backend = self.backend
        attr = backend.resolve(path, follow=True)
        if not attr.is_dir:
            info = self._info(path, backend.resolve(path, follow=False))
            return iter([info if detail else path])
        entries = backend.readdir(attr.ino)
        base = path.rstrip("/")
        if not detail:
            return (f"{base}/{name}" for name, _, _ in entries)
        return (self._info(f"{base}/{name}", child) for name, child, _ in entries)

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
        self._writable(path)
        if create_parents:
            self.makedirs(path, exist_ok=False)
            return
        parent, name = self.backend.resolve_parent(path)
        self.backend.mkdir(parent, name, DIR_MODE, os.getuid(), os.getgid())

    @_names_path
    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        self._writable(path)
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
        path = self._strip_protocol(path)
        self._writable(path)
        parent, name = self.backend.resolve_parent(path)
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
        path = self._strip_protocol(path)
        if mode != "rb":
            self._writable(path)
        return AgentFile(
            self,
            path,
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
        handle, attr = backend.open_path(path)
        with handle:
            size = attr.size
            begin = 0 if start is None else (start if start >= 0 else max(0, size + start))
            stop = size if end is None else (end if end >= 0 else max(0, size + end))
            if stop <= begin:
                return b""
            return handle.read(begin, stop - begin)

    @_names_path
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        self._writable(path)
        backend = self.backend
        if self._intrans and not backend.transactional:
            # Without a database transaction, defer the write to the commit.
            with self.open(path, "xb" if mode == "create" else "wb") as f:
                f.write(value)
            return
        data = bytes(value)
        if backend.write_plain(path, data, FILE_MODE, exclusive=mode == "create") is not None:
            return
        if mode != "create":
            # write_file is one transaction that checks the directory is still there;
            # a directory renamed after the lookup takes the file along, as with open().
            parent, name = self.parent_for_write(path)
            backend.write_file(parent, name, data, FILE_MODE)
            return
        with backend.transaction():
            parent, name = self.parent_for_write(path)
            if mode == "create" and backend.lookup_or_none(parent, name) is not None:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            backend.write_file(parent, name, data, FILE_MODE)

    def parent_for_write(self, path: str) -> tuple[int, str]:
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
        self._writable(path)
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
        self._writable(path)
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
        self._writable(path)
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
        self._writable(path2)
        source = self._resolve(path1)
        if source.is_dir:
            self.makedirs(path2, exist_ok=True)
            return
        with self.backend.transaction():
            parent, name = self.parent_for_write(path2)
            self.backend.copy_file(source.ino, parent, name)
        self.invalidate_cache(path2)

    @_names_path
    def mv(
        self, path1: Any, path2: Any, recursive: bool = False, maxdepth: Any = None, **kwargs: Any
    ) -> None:
        """Rename in place when one path moves to one path; else copy and delete."""
        self._writable(path1)
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
        path = self._strip_protocol(path)
        self._writable(path)
        parent, name = self.backend.resolve_parent(path)
        self.backend.symlink(parent, name, os.fsencode(target), os.getuid(), os.getgid())

    @_names_path
    def chmod(self, path: str, mode: int) -> None:
        self._writable(path)
        self.backend.setattr(self._resolve(path).ino, mode=stat.S_IMODE(mode))
