"""disk mode: the workspace is a real directory, confined beneath its root."""

from __future__ import annotations

from vfs.backends.disk.backend import DiskBackend

__all__ = ["DiskBackend"]
