"""``ws.checkpoints``: take, list, read, diff, roll back to and delete checkpoints.

A checkpoint covers the workspace's files only: artifacts, caches, sessions
and transcripts are not part of it and a rollback leaves them as they are.
The rows live in :mod:`vfs.backends.checkpoints`; this module adds what each
mode needs around them (an import of the tree in disk mode, a write-back on
rollback, the refusal while mounted) and the diff of two trees.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from vfs.backends import Backend, Database, open_backend
from vfs.backends.base import ROOT_INO, Attr
from vfs.backends.checkpoints import CheckpointInfo, CheckpointTables, check_checkpoint_name
from vfs.backends.disk_restore import write_tree
from vfs.state.mounts import MountTable
from vfs.state.registry import AgentRecord, Registry


class Workspace(Protocol):
    """What checkpoints need of a ``vfs.Workspace`` (which makes them: this
    module does not import it back)."""

    agent: str
    mode: str
    read_only: bool
    db: Database
    record: AgentRecord
    registry: Registry
    files_backend: Backend


__all__ = ["CheckpointInfo", "Checkpoints", "TreeChange", "check_checkpoint_name"]


@dataclass(frozen=True, slots=True)
class TreeChange:
    """One path that differs between two trees: ``added``, ``modified`` or ``deleted``."""

    kind: str
    path: str
    type: str
    old_size: int | None = None
    size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "type": self.type,
            "old_size": self.old_size,
            "size": self.size,
        }


class Checkpoints:
    """The checkpoints of one workspace (``ws.checkpoints``)."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.tables = CheckpointTables(workspace.db)
        self._trees: dict[int, Backend] = {}

    def create(self, name: str | None = None, message: str | None = None) -> CheckpointInfo:
        """Take checkpoint ``name`` (default: a UTC timestamp) of the workspace's files."""
        self._writable()
        name = check_checkpoint_name(_default_name() if name is None else name)
        if self.ws.mode == "disk":
            return self.tables.import_tree(name, message, self.ws.record.workspace)
        return self.tables.copy_live(name, message, self.ws.mode)

    def list(self) -> builtins.list[CheckpointInfo]:
        return self.tables.list()

    def get(self, name: str) -> CheckpointInfo:
        return self.tables.get(name)

    def delete(self, name: str) -> None:
        self._writable()
        self.tables.delete(name)

    def open(self, name: str) -> Backend:
        """A read-only backend over checkpoint ``name``'s files; :func:`close_view` it after use."""
        info = self.tables.get(name)
        return self._open(info.id, info.mode)

    def _open(self, checkpoint_id: int, mode: str) -> Backend:
        view = self.tables.open_view(checkpoint_id)
        # A disk checkpoint is stored as sqlite-mode rows.
        mode = "sqlite" if mode == "disk" else mode
        return open_backend(mode, view, self.ws.record.workspace, read_only=True)

    # -- the /.vfs/checkpoints tree (a CheckpointSource) -----------------------

    def trees(self) -> builtins.list[tuple[int, str, float]]:
        return [(cid, name, created) for cid, name, created, _mode in self.tables.names()]

    def tree(self, checkpoint_id: int) -> Backend | None:
        backend = self._trees.get(checkpoint_id)
        if backend is None:
            modes = {cid: mode for cid, _name, _created, mode in self.tables.names()}
            if checkpoint_id not in modes:
                return None
            backend = self._trees[checkpoint_id] = self._open(checkpoint_id, modes[checkpoint_id])
        return backend

    def close(self) -> None:
        """Close the backends :meth:`tree` opened."""
        for backend in self._trees.values():
            close_view(backend)
        self._trees.clear()

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[Backend]:
        """A read-only backend over checkpoint ``name``'s files for the block."""
        backend = self.open(name)
        try:
            yield backend
        finally:
            close_view(backend)

    def restore(self, name: str) -> None:
        """Roll the workspace's files back to checkpoint ``name``.

        sqlite and hybrid mode: one transaction, all or nothing (hybrid: the
        overlay goes back; the disk tree below is untouched). disk mode: files
        the checkpoint lacks are removed, changed ones rewritten atomically.
        Refused (``OSError(EBUSY)``) while the agent is mounted.
        """
        self._writable()
        info = self.tables.get(name)
        mounts = MountTable(self.ws.registry.db).for_agent(self.ws.agent)
        if mounts:
            where = mounts[0].mountpoint
            raise OSError(
                errno.EBUSY,
                f"agent {self.ws.agent} is mounted at {where}; unmount it before rolling back"
                f" (vfs umount {where})",
            )
        if info.mode != self.ws.mode:
            raise OSError(
                errno.EINVAL,
                f"checkpoint {name} was taken in {info.mode} mode;"
                f" the workspace is in {self.ws.mode} mode",
            )
        if self.ws.mode == "disk":
            with self.reading(name) as saved:
                write_tree(saved, self.ws.record.workspace)
            return
        backend = self.ws.files_backend
        db = self.ws.db
        with db.write():
            if self.ws.mode == "hybrid" and db.value(
                "SELECT (SELECT count(*) FROM overlay_commit_ops)"
                " + (SELECT count(*) FROM mode_switch)"
            ):
                raise OSError(errno.EBUSY, "a commit or mode switch is under way; finish it first")
            self.tables.restore_live(name, self.ws.mode)
            backend.reclaim_orphans()  # nested: frees what the rollback unnamed unless open

    def diff(self, name: str, to: str | None = None) -> builtins.list[TreeChange]:
        """What changed from checkpoint ``name`` to checkpoint ``to`` (default: now)."""
        with self.reading(name) as old:
            if to is None:
                return diff_trees(old, self.ws.files_backend)
            with self.reading(to) as new:
                return diff_trees(old, new)

    def _writable(self) -> None:
        if self.ws.read_only:
            raise OSError(errno.EROFS, "Read-only file system")


def close_view(backend: Backend) -> None:
    """Close a backend from :meth:`Checkpoints.open` and its connection."""
    backend.close()
    db = getattr(backend, "db", None)
    if db is not None:
        db.close()


def _default_name() -> str:
    return datetime.now(UTC).strftime("cp-%Y%m%d-%H%M%S-%f")


# -- comparing two trees ----------------------------------------------------------


def _kind(attr: Attr) -> str:
    if attr.is_dir:
        return "dir"
    if stat.S_ISLNK(attr.mode):
        return "symlink"
    return "other" if attr.is_special else "file"


def walk(backend: Backend, ino: int = ROOT_INO, prefix: str = "") -> Iterator[tuple[str, Attr]]:
    """Every ``(path, attr)`` under directory ``ino``, parents first."""
    for name, attr, _offset in backend.readdir(ino):
        path = f"{prefix}/{name}"
        yield path, attr
        if attr.is_dir:
            yield from walk(backend, attr.ino, path)


def _content_digest(backend: Backend, attr: Attr) -> bytes:
    import xxhash

    digest = xxhash.xxh3_128()
    offset = 0
    while offset < attr.size:
        piece = backend.read(attr.ino, offset, min(1 << 20, attr.size - offset))
        if not piece:
            break
        digest.update(piece)
        offset += len(piece)
    return digest.digest()


def same_content(a: Backend, a_attr: Attr, b: Backend, b_attr: Attr) -> bool:
    if a_attr.size != b_attr.size:
        return False
    # Chunk-list checksums compare directly between the row-based engines.
    if a.mode != "disk" and b.mode != "disk":
        return a.checksum(a_attr.ino) == b.checksum(b_attr.ino)
    return _content_digest(a, a_attr) == _content_digest(b, b_attr)


def diff_trees(old: Backend, new: Backend) -> builtins.list[TreeChange]:
    """The paths added, modified (content, type, mode or target) and deleted from old to new."""
    before = dict(walk(old))
    after = dict(walk(new))
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if b is None:
            assert a is not None
            changes.append(TreeChange("deleted", path, _kind(a), old_size=a.size))
        elif a is None:
            changes.append(TreeChange("added", path, _kind(b), size=b.size))
        elif (
            stat.S_IFMT(a.mode) != stat.S_IFMT(b.mode)  # a FIFO that became a socket, too
            or (a.mode & 0o7777) != (b.mode & 0o7777)
            or (a.is_special and a.rdev != b.rdev)
            or (_kind(a) == "file" and not same_content(old, a, new, b))
            or (_kind(a) == "symlink" and old.readlink(a.ino) != new.readlink(b.ino))
        ):
            changes.append(TreeChange("modified", path, _kind(b), a.size, b.size))
    return changes
