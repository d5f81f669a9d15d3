"""The parts of ``AgentFileSystem`` that fsspec reaches through the class: its
transaction, how a URL is stripped on the class and on an instance, and the
home that keys fsspec's instance cache."""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol

from fsspec.transaction import Transaction

from vfs.settings import default_home
from vfs.urls import make_url, normalize, split_url


class PathStripper(Protocol):
    """What :class:`StripProtocol` needs of a filesystem instance."""

    def workspace_path(self, path: Any) -> Any: ...


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
            if commit:
                # The files publish one by one; their content starts for the disk together.
                pending = [getattr(f, "unpublished", None) for f in self.files]
                self.fs.backend.sync_ahead([h for h in pending if h is not None])
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


class StripProtocol:
    """``_strip_protocol``, which fsspec calls both on the class and on an instance.

    On the class (fsspec's URL parsing, ``open_files``, universal_pathlib) a URL
    keeps the agent it names, as ``agentvfs://AGENT/PATH``, so the agent survives
    until a filesystem sees the path. On an instance it gives the workspace path,
    after checking that the agent named is this filesystem's own.
    """

    def __get__(self, fs: PathStripper | None, owner: type) -> Any:
        return keep_agent if fs is None else fs.workspace_path


def keep_agent(path: Any) -> Any:
    if isinstance(path, list):
        return [keep_agent(p) for p in path]
    agent, rest = split_url(os.fspath(path))
    return make_url(agent, rest) if agent else normalize(rest)


class DefaultHome:
    """The home an instance without ``home=`` opens, as part of fsspec's cache key:
    a changed ``AGENT_VFS_HOME`` gets a filesystem over the new home."""

    def __get__(self, fs: object, owner: type) -> str:
        return str(default_home())
