"""Restoring a backup, on this machine or another, without ever harming the old agent.

The agent is rebuilt in a staging directory beside the others
(``agents/.restore-<name>-<pid>``): the snapshot, every chunk put back and
checked against its hash, the disk tree. Only a complete, verified copy is
swapped in, with one atomic exchange of the two directories; the registry
record follows, from a note (``restore.json``) the copy carries, so a restore
killed at any point leaves either the old agent or the new one, and the next
opening of the agent finishes the record.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vfs.backends import Database, steps
from vfs.backends.chunks import ChunkStore
from vfs.backends.host import exchange_paths, pid_alive
from vfs.backends.names import check_agent_id
from vfs.backup.backup import STATE, Progress, backup_dir, quiet
from vfs.backup.catalog import find_backup
from vfs.backup.objects import Destination, open_destination
from vfs.backup.tree import restore_tree
from vfs.settings import resolve_home
from vfs.settings.config import open_blob_store
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry

NOTE = "restore.json"
BATCH = 256  # chunks put back per write transaction


@dataclass
class RestoreReport:
    agent: str
    source: str
    backup_id: str
    mode: str
    chunks: int
    files: int
    replaced: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _staging_dirs(registry: Registry, name: str) -> list[Path]:
    return sorted((registry.home / "agents").glob(f".restore-{name}-*"))


def _clear_dead_staging(registry: Registry, name: str) -> None:
    """Remove what restores of ``name`` killed before their swap left behind."""
    for stage in _staging_dirs(registry, name):
        pid = stage.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stage, ignore_errors=True)


def finish_interrupted_restore(registry: Registry, agent: str) -> None:
    """Complete the registry record of a restore killed after its swap."""
    directory = registry.agent_dir(agent)
    note = directory / NOTE
    try:
        wanted = json.loads(note.read_text())
    except FileNotFoundError:
        return
    registry.put_record(
        agent, wanted["mode"], directory / "agent.sqlite", Path(wanted["workspace"])
    )
    if wanted.get("old"):
        shutil.rmtree(wanted["old"], ignore_errors=True)
    note.unlink(missing_ok=True)


def _fill_chunks(
    db: Database, dest: Destination, chunks: dict[str, str], progress: Progress
) -> None:
    store = ChunkStore(db)
    items = sorted(chunks.items(), key=lambda item: int(item[0]))
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        pieces = dest.get_many([key for _, key in batch])
        with db.write():
            store.fill(
                [
                    (int(chunk_id), data)
                    for (chunk_id, _key), data in zip(batch, pieces, strict=True)
                ]
            )
        steps.step()
        progress("chunks", min(start + BATCH, len(items)), len(items))


def restore_agent(
    source: str,
    agent: str | None = None,
    home: str | os.PathLike[str] | None = None,
    *,
    as_name: str | None = None,
    backup_id: str | None = None,
    force: bool = False,
    progress: Progress = quiet,
) -> RestoreReport:
    """Restore ``agent``'s latest backup (or ``backup_id``) from ``source`` as ``as_name``.

    Refuses (``FileExistsError``) to replace an existing agent unless ``force``,
    and (``OSError(EBUSY)``) while that agent is mounted.
    """
    registry = Registry(resolve_home(home))
    dest = open_destination(source)
    entry = find_backup(dest, agent, backup_id)
    if entry.agent == STATE:
        raise ValueError("that is a backup of the control database, not of an agent")
    name = check_agent_id(as_name or entry.agent)
    manifest = entry.manifest
    finish_interrupted_restore(registry, name)
    exists = registry.exists(name) or registry.agent_dir(name).exists()
    if exists and not force:
        raise FileExistsError(errno.EEXIST, f"agent {name} exists; restore --force replaces it")
    if MountTable(registry.db).for_agent(name):
        raise OSError(errno.EBUSY, f"agent {name} is mounted; unmount it first")
    _clear_dead_staging(registry, name)
    stage = registry.home / "agents" / f".restore-{name}-{os.getpid()}"
    stage.mkdir(mode=0o700, parents=True)
    try:
        db_path = stage / "agent.sqlite"
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out:
            out.write(dest.read_bytes(f"{backup_dir(dest, entry.agent, entry.id)}/snapshot.sqlite"))
        db = Database(db_path, "agent", create=False)
        # Spilled chunks go back to the restored agent's store (its own directory
        # is the staging one until the swap), wherever the backup was taken.
        db.blobs = open_blob_store(name, registry.home, stage)
        try:
            _fill_chunks(db, dest, manifest["chunks"], progress)
            problems = db.integrity_check()
            if problems:
                raise OSError(errno.EIO, f"restored database fails its check: {problems[0]}")
            db.vacuum()  # folds the WAL in: the swapped directory holds one file
        finally:
            db.close()
        files = 0
        if manifest.get("tree") is not None:
            (stage / "workspace").mkdir(mode=0o700)

            def counted() -> None:
                nonlocal files
                files += 1
                progress("files", files, None)

            restore_tree(dest, stage / "workspace", manifest["tree"], counted)
        steps.step()
        target = registry.agent_dir(name)
        workspace = target / "workspace"
        note = {"mode": manifest["mode"], "workspace": str(workspace), "old": None}
        if target.exists():
            note["old"] = str(stage)
            (stage / NOTE).write_text(json.dumps(note))
            exchange_paths(stage, target)  # the one moment the agent changes
            steps.step()
        else:
            (stage / NOTE).write_text(json.dumps(note))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(stage, target)
            steps.step()
        finish_interrupted_restore(registry, name)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return RestoreReport(
        name, source, entry.id, manifest["mode"], len(manifest["chunks"]), files, exists
    )
