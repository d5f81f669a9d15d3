"""Storage engines: the only code that knows how workspace bytes are stored."""

from __future__ import annotations

from pathlib import Path

from vfs.backends.base import Attr, Backend, Handle, StatFs
from vfs.backends.db import Database

__all__ = ["Attr", "Backend", "Database", "Handle", "StatFs", "open_backend"]


def open_backend(mode: str, db: Database, workspace: Path, *, read_only: bool = False) -> Backend:
    """The backend for ``mode`` over an agent's database and workspace directory."""
    if mode == "sqlite":
        from vfs.backends.sqlite import SqliteBackend

        return SqliteBackend(db, read_only=read_only)
    if mode == "disk":
        from vfs.backends.disk import DiskBackend

        return DiskBackend(workspace, read_only=read_only)
    if mode == "hybrid":
        from vfs.backends.hybrid import HybridBackend

        return HybridBackend(db, workspace, read_only=read_only)
    raise ValueError(f"unknown workspace mode {mode!r}")
