"""Which backups a destination holds, and pruning old ones."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from vfs.backup.backup import backup_dir
from vfs.backup.objects import OBJECTS, Destination


@dataclass(frozen=True)
class BackupEntry:
    agent: str
    id: str
    mode: str
    created_at: float
    logical_bytes: int
    snapshot_bytes: int
    manifest: dict[str, Any]


def list_backups(dest: Destination, agent: str | None = None) -> list[BackupEntry]:
    """Complete backups (those with a manifest), oldest first."""
    found = []
    agents = [agent] if agent is not None else sorted(dest.listdir(dest.path("backups")))
    for name in agents:
        for backup_id in sorted(dest.listdir(dest.path("backups", name))):
            try:
                manifest = dest.read_json(f"{backup_dir(dest, name, backup_id)}/manifest.json")
            except FileNotFoundError:
                continue  # interrupted before its manifest: not a backup
            found.append(
                BackupEntry(
                    name, backup_id, manifest["mode"], manifest["created_at"],
                    manifest["logical_bytes"], manifest["snapshot"]["size"], manifest,
                )
            )  # fmt: skip
    return sorted(found, key=lambda b: (b.agent, b.id))


def find_backup(dest: Destination, agent: str | None, backup_id: str | None) -> BackupEntry:
    """The backup ``backup_id`` of ``agent``, or the latest; ``FileNotFoundError`` if none."""
    candidates = [
        b
        for b in list_backups(dest, agent)
        if backup_id is None or b.id == backup_id or b.id.startswith(backup_id)
    ]
    if agent is None and len({b.agent for b in candidates}) > 1:
        raise ValueError(f"{dest.url} holds backups of several agents: name one")
    if not candidates:
        what = f"backup {backup_id}" if backup_id else "backups"
        raise FileNotFoundError(
            errno.ENOENT, f"no {what} of {agent or 'any agent'} at {dest.url}", dest.url
        )
    return candidates[-1]


def _referenced(entries: list[BackupEntry]) -> set[str]:
    keys: set[str] = set()
    for entry in entries:
        keys.update(entry.manifest["chunks"].values())
        for item in entry.manifest.get("tree") or ():
            keys.update(item.get("objects", ()))
    return keys


def prune(dest: Destination, agent: str, keep: int) -> tuple[list[str], int]:
    """Keep the newest ``keep`` backups of ``agent``; remove the others and every
    object no remaining backup (of any agent) refers to. Returns the removed
    backup ids and how many objects went."""
    if keep < 1:
        raise ValueError("--prune keeps at least one backup")
    mine = list_backups(dest, agent)
    doomed = mine[:-keep]
    for entry in doomed:
        # The manifest first: a backup interrupted here is simply incomplete.
        dest.fs.rm(f"{backup_dir(dest, agent, entry.id)}/manifest.json")
        dest.remove_tree(backup_dir(dest, agent, entry.id))
    if not doomed:
        return [], 0
    kept = _referenced(list_backups(dest))
    removed = 0
    for path in dest.fs.find(dest.path(OBJECTS)):
        key = path.rsplit("/", 1)[-1]
        if key not in kept and not key.endswith(".partial"):
            dest.fs.rm(path)
            removed += 1
    return [entry.id for entry in doomed], removed
