"""Backups of agents to a local directory or object storage, and restoring them.

``backup`` takes content-addressed online snapshots, ``catalog`` lists and
prunes them, ``restore`` swaps a verified copy in; ``objects`` is the store
they share at a destination.
"""

from __future__ import annotations

from vfs.backup.backup import BackupReport, Progress, backup_agent, backup_all
from vfs.backup.catalog import BackupEntry, find_backup, list_backups, prune
from vfs.backup.objects import Destination, open_destination
from vfs.backup.restore import RestoreReport, finish_interrupted_restore, restore_agent

__all__ = [
    "BackupEntry",
    "BackupReport",
    "Destination",
    "Progress",
    "RestoreReport",
    "backup_agent",
    "backup_all",
    "find_backup",
    "finish_interrupted_restore",
    "list_backups",
    "open_destination",
    "prune",
    "restore_agent",
]
