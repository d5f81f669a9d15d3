"""sqlite mode: the whole workspace as rows of the agent database."""

from __future__ import annotations

from vfs.backends.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
