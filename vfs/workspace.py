"""``Workspace``: one agent's database, its files and the stores on top."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
from fsspec.spec import AbstractFileSystem

from vfs.backends import Backend, Database, open_backend
from vfs.backends.runs_view import ReservedTree
from vfs.backup.restore import finish_interrupted_restore
from vfs.settings import resolve_home
from vfs.settings.config import (
    DEFAULT_MODE,
    check_explicit_mode,
    new_agent_mode,
    open_blob_store,
    resolve_mode,
)
from vfs.settings.switch import (
    UnfinishedSwitch,
    UnfinishedSwitchWarning,
    finish_interrupted_switch,
)
from vfs.state.mounts import MountTable
from vfs.state.registry import AgentRecord, Registry

if TYPE_CHECKING:
    from vfs.backends.hybrid.overlay import Overlay
    from vfs.checkpoints import Checkpoints
    from vfs.stores import Artifacts, Caches, Sessions, Transcripts
    from vfs.watch import Watcher


class Workspace:
    """An agent's workspace.

    Use :meth:`open` for an existing agent and :meth:`create` for a new one.
    The backend that stores files is chosen by the agent's mode.
    """

    def __init__(
        self,
        registry: Registry,
        record: AgentRecord,
        *,
        mode: str | None = None,
        read_only: bool = False,
        checkpoint: str | None = None,
    ) -> None:
        if mode is not None and mode != record.mode:
            check_explicit_mode(registry, record.id, mode)  # raises ModeMismatch
        self.registry = registry
        self.record = record
        self.agent = record.id
        self.home = registry.home
        self.mode = mode or record.mode
        #: the checkpoint whose files this workspace shows, read-only (None: the live files)
        self.checkpoint = checkpoint
        self.read_only = read_only or checkpoint is not None
        self.db = Database(record.db_path, "agent", create=False)  # only create() makes one
        self.db.blobs = open_blob_store(record.id, registry.home, record.db_path.parent)
        self.db.keep_reserve()  # room to open and delete on a full disk
        if self.mode in ("disk", "hybrid"):
            record.workspace.mkdir(parents=True, exist_ok=True)
        # The mode's backend, wrapped so that /.vfs serves run artifacts and checkpoints read-only.
        self.files_backend: Backend = (
            open_backend(self.mode, self.db, record.workspace, read_only=read_only)
            if checkpoint is None
            else self.checkpoints.open(checkpoint)
        )
        self.backend: Backend = ReservedTree(self.files_backend, self.artifacts, self.checkpoints)

    @classmethod
    def open(
        cls,
        agent: str,
        home: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        mode: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        checkpoint: str | None = None,
    ) -> Workspace:
        """Open ``agent``; with ``create=True`` an unknown agent is created in ``mode``.

        With ``checkpoint``, the files are that checkpoint's, read-only (the
        stores stay the live ones). Raises ``FileNotFoundError`` naming the
        agent when it does not exist, or the checkpoint when it does not.
        """
        registry = Registry(resolve_home(home))
        finish_interrupted_restore(registry, agent)  # a restore killed after its swap
        try:
            finish_interrupted_switch(registry, agent)  # its cleanup would drop new writes
        except UnfinishedSwitch as unfinished:
            # The agent stays usable: in its old mode, or read-only past the flip.
            warnings.warn(str(unfinished), UnfinishedSwitchWarning, stacklevel=2)
            read_only = read_only or unfinished.flipped
        mode = resolve_mode(registry, agent, mode)  # AGENT_VFS_MODE and config.toml
        if create and not registry.exists(agent):
            with contextlib.suppress(FileExistsError):  # another process created it first
                registry.create(agent, mode or DEFAULT_MODE, workspace)
        return cls(
            registry, registry.get(agent), mode=mode, read_only=read_only, checkpoint=checkpoint
        )

    @classmethod
    def create(
        cls,
        agent: str,
        home: str | os.PathLike[str] | None = None,
        *,
        mode: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
    ) -> Workspace:
        """Create a new agent; ``FileExistsError`` if it exists.

        ``mode`` defaults to the mode that applies to a new agent:
        ``AGENT_VFS_MODE``, then ``config.toml`` (``[agents.<id>]``, then
        ``[defaults]``), then sqlite. ``workspace`` must be an existing directory.
        """
        registry = Registry(resolve_home(home))
        record = registry.create(agent, mode or new_agent_mode(agent, registry.home), workspace)
        return cls(registry, record)

    @staticmethod
    def delete(
        agent: str,
        home: str | os.PathLike[str] | None = None,
        *,
        workspace_too: bool = False,
    ) -> None:
        """Delete ``agent``: its registry entry, settings and directory under the home.

        Refused (``OSError(EBUSY)``) while the agent is mounted. A workspace
        directory given at creation (outside the home) belongs to the user and
        is kept unless ``workspace_too``. ``FileNotFoundError`` if there is no
        such agent.
        """
        registry = Registry(resolve_home(home))
        try:
            record = registry.get(agent)
            mounts = MountTable(registry.db).for_agent(agent)
            if mounts:
                where = mounts[0].mountpoint
                raise OSError(
                    errno.EBUSY,
                    f"agent {agent} is mounted at {where}; unmount it first (vfs umount {where})",
                )
            directory = registry.agent_dir(agent)
            # A store shared with other agents no longer waits for this one's references.
            with contextlib.suppress(OSError, ValueError):
                open_blob_store(agent, registry.home, record.db_path.parent).unregister()
            # Out of the way first, under a name no agent id can take, so that a
            # new agent of this name never finds the old database.
            trash = directory.with_name(f".deleted-{agent}-{os.getpid()}")
            if directory.exists():
                directory.rename(trash)
            try:
                registry.delete(agent)
            except BaseException:
                if trash.exists():
                    trash.rename(directory)
                raise
        finally:
            registry.db.close()
        shutil.rmtree(trash, ignore_errors=True)
        if workspace_too and not record.workspace.is_relative_to(directory):
            shutil.rmtree(record.workspace)

    @property
    def directory(self) -> Path:
        return self.registry.agent_dir(self.agent)

    @cached_property
    def fs(self) -> AbstractFileSystem:
        """The workspace as an fsspec filesystem (``vfs.fs.AgentFileSystem``).

        Made through fsspec's registry of the ``agentvfs`` protocol, so this
        module and the filesystem's, which opens workspaces, do not import
        each other.
        """
        return fsspec.filesystem("agentvfs", workspace=self)

    @cached_property
    def checkpoints(self) -> Checkpoints:
        """Named, read-only copies of the files to read, diff and roll back to."""
        from vfs.checkpoints import Checkpoints

        return Checkpoints(self)

    @cached_property
    def overlay(self) -> Overlay:
        """The hybrid overlay's changes: ``diff()``, ``commit(paths, force=)``,
        ``discard(paths)``.

        Raises ``ValueError`` naming the mode when the agent is not in hybrid mode.
        """
        from vfs.backends.hybrid.backend import HybridBackend
        from vfs.backends.hybrid.overlay import Overlay

        backend = self.files_backend
        if not isinstance(backend, HybridBackend):
            raise ValueError(
                f"agent {self.agent} is in {self.mode} mode:"
                " diff, commit and discard need hybrid mode"
            )
        return Overlay(backend)

    @cached_property
    def artifacts(self) -> Artifacts:
        from vfs.stores import Artifacts

        return Artifacts(self.db, self.files_backend)

    @cached_property
    def caches(self) -> Caches:
        from vfs.stores import Caches

        return Caches(self.db)

    @cached_property
    def sessions(self) -> Sessions:
        from vfs.stores import Sessions

        return Sessions(self.db)

    @cached_property
    def transcripts(self) -> Transcripts:
        from vfs.stores import Transcripts

        return Transcripts(self.db)

    def watch(self, path: str = "/") -> Watcher:
        """Change events under ``path`` from any writer, within 100 ms (see :mod:`vfs.watch`)."""
        from vfs.watch import Watcher

        return Watcher(self.db, self.mode, self.record.workspace, path)

    def close(self) -> None:
        """Close files and databases; a write that could not land (a full disk)
        is raised once, after everything is closed."""
        with contextlib.ExitStack() as stack:
            stack.callback(self.registry.db.close)
            stack.callback(self.db.close)
            stack.callback(self.checkpoints.close)
            if self.checkpoint is not None:
                from vfs.checkpoints import close_view

                stack.callback(close_view, self.files_backend)
            self.backend.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
