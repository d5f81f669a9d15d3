"""Taking backups: a consistent online snapshot of an agent, content-addressed.

A backup of agent ``A`` at destination ``D`` is::

    D/objects/<xx>/<blake2b>            content: database chunks and disk-tree file pieces
    D/backups/A/<id>/snapshot.sqlite    the agent database with chunk bytes emptied
    D/backups/A/<id>/manifest.json      what the backup holds; written last

The snapshot is taken with ``VACUUM INTO`` (one read transaction: other
processes and a mount keep writing, and the copy shows one moment). Its chunk
bytes go to objects named by their digest, so a second backup of an
unchanged workspace stores no content again and agents that hold the same
bytes share objects; what remains of the snapshot is metadata. A backup
without a manifest is incomplete and is ignored by listing and restore.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vfs.backends import Database
from vfs.backends.chunks import ChunkStore
from vfs.backup.objects import Destination, open_destination
from vfs.backup.tree import store_tree
from vfs.settings import resolve_home
from vfs.settings.config import open_blob_store
from vfs.state.registry import Registry

FORMAT = 1
STATE = "_state"  # the control database's backups, beside the agents'
BATCH = 64  # objects sent together: object storage answers a batch concurrently

Progress = Callable[[str, int, int | None], None]  # (what, done, total or None)


def quiet(what: str, done: int, total: int | None) -> None:
    """The default progress observer: says nothing."""


@dataclass
class BackupReport:
    agent: str
    id: str
    url: str
    mode: str
    chunks: int = 0
    files: int = 0
    logical_bytes: int = 0  # content the backup holds
    new_objects: int = 0
    new_bytes: int = 0  # content written by this backup
    snapshot_bytes: int = 0
    unstable: list[str] = field(default_factory=list)  # disk files that never held still

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_backup_id() -> str:
    """Sortable by time, unique across machines."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def backup_dir(dest: Destination, agent: str, backup_id: str) -> str:
    return dest.path("backups", agent, backup_id)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _snapshot(
    db: Database, workdir: Path, dest: Destination, report: BackupReport, progress: Progress
) -> tuple[bytes, dict[str, str], int]:
    """A metadata-only copy of ``db`` and the object of every chunk it referenced."""
    path = workdir / "snapshot.sqlite"
    db.copy_to(path)
    snapshot = Database(path, db.kind, create=False)
    snapshot.blobs = db.blobs  # spilled chunks are read from the store into objects
    try:
        version = int(snapshot.value("PRAGMA user_version"))
        chunk_objects: dict[str, str] = {}
        if db.kind == "agent":
            chunks = ChunkStore(snapshot)
            rows = list(chunks.rows())
            for start in range(0, len(rows), BATCH):
                batch = rows[start : start + BATCH]
                stored = dest.put_many([chunks.get(chunk_id) for chunk_id, _, _ in batch])
                for (chunk_id, _digest, size), (key, new) in zip(batch, stored, strict=True):
                    chunk_objects[str(chunk_id)] = key
                    report.logical_bytes += size
                    if new:
                        report.new_objects += 1
                        report.new_bytes += size
                progress("chunks", start + len(batch), len(rows))
            report.chunks = len(rows)
            chunks.drop_bytes()
        snapshot.vacuum()
    finally:
        snapshot.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path.read_bytes(), chunk_objects, version


def _verify(dest: Destination, where: str, manifest: dict[str, Any], workdir: Path) -> None:
    """Read the backup back: the snapshot's digest and integrity, every object's name."""
    data = dest.read_bytes(f"{where}/snapshot.sqlite")
    if _sha256(data) != manifest["snapshot"]["sha256"]:
        raise OSError(errno.EIO, "backup snapshot does not match its manifest", where)
    copy = workdir / "verify.sqlite"
    copy.write_bytes(data)
    check = Database(copy, manifest["kind"], create=False)
    try:
        problems = check.integrity_check()
    finally:
        check.close()
    if problems:
        raise OSError(errno.EIO, f"backup snapshot fails its integrity check: {problems[0]}", where)
    keys = set(manifest["chunks"].values())
    for entry in manifest.get("tree") or ():
        keys.update(entry.get("objects", ()))
    dest.forget_listing()  # list again: what is really there now
    missing = keys - dest.keys()
    if missing:
        raise FileNotFoundError(errno.ENOENT, "backup object is missing", min(missing))


def backup_database(
    db: Database,
    dest: Destination,
    name: str,
    *,
    mode: str,
    tree: Path | None = None,
    progress: Progress = quiet,
) -> BackupReport:
    """Back up ``db`` (and the disk ``tree``, if any) under ``backups/<name>/``."""
    report = BackupReport(agent=name, id=new_backup_id(), url=dest.url, mode=mode)
    where = backup_dir(dest, name, report.id)
    with tempfile.TemporaryDirectory(prefix=f".backup-{os.getpid()}-", dir=db.path.parent) as tmp:
        workdir = Path(tmp)
        snapshot, chunk_objects, version = _snapshot(db, workdir, dest, report, progress)
        entries = None
        if tree is not None:

            def stored(size: int) -> None:
                report.new_objects += 1
                report.new_bytes += size

            def counted() -> None:
                report.files += 1
                progress("files", report.files, None)

            entries, report.unstable = store_tree(dest, tree, stored, counted)
            report.logical_bytes += sum(e["size"] for e in entries if "objects" in e)
        dest.write_bytes(f"{where}/snapshot.sqlite", snapshot)
        report.snapshot_bytes = len(snapshot)
        manifest = {
            "format": FORMAT,
            "kind": db.kind,
            "agent": name,
            "id": report.id,
            "mode": mode,
            "schema_version": version,
            "created_at": time.time(),
            "host": os.uname().nodename,
            "snapshot": {"size": len(snapshot), "sha256": _sha256(snapshot)},
            "chunks": chunk_objects,
            "tree": entries,
            "logical_bytes": report.logical_bytes,
        }
        _verify(dest, where, manifest, workdir)
        dest.write_json(f"{where}/manifest.json", manifest)  # last: the backup is complete
    return report


def backup_agent(
    agent: str,
    url: str,
    home: str | os.PathLike[str] | None = None,
    *,
    progress: Progress = quiet,
) -> BackupReport:
    """Back up one agent: its database and, in disk and hybrid mode, its disk tree."""
    registry = Registry(resolve_home(home))
    record = registry.get(agent)
    dest = open_destination(url, create=True)
    db = Database(record.db_path, "agent", create=False)
    db.blobs = open_blob_store(agent, registry.home, record.db_path.parent)
    try:
        tree = record.workspace if record.mode in ("disk", "hybrid") else None
        if tree is not None and not tree.is_dir():
            tree = None
        return backup_database(db, dest, agent, mode=record.mode, tree=tree, progress=progress)
    finally:
        db.close()


def backup_all(
    url: str, home: str | os.PathLike[str] | None = None, *, progress: Progress = quiet
) -> list[BackupReport]:
    """Back up every agent and the control database (the registry and settings)."""
    registry = Registry(resolve_home(home))
    reports = [backup_agent(r.id, url, registry.home, progress=progress) for r in registry.list()]
    dest = open_destination(url, create=True)
    reports.append(backup_database(registry.db, dest, STATE, mode="state", progress=progress))
    return reports
