"""Collecting unreferenced blobs: what ``vfs vacuum`` and ``vfs doctor --fix`` run.

A blob store may be shared by the agents of this home and of other homes and
machines. Each agent of this home that uses a store publishes there the blobs
its database names (live files, checkpoints, stores); agents elsewhere
publish when collection runs on their home. A blob is deleted only when no
publication names it and it is older than the grace period before the oldest
publication (see ``vfs.backends.blobs.collect``).
"""

from __future__ import annotations

import os
import time

from vfs.backends import Database
from vfs.backends.blobs import BlobStore, Collection, collect
from vfs.backends.chunks import ChunkStore
from vfs.settings.config import open_blob_store
from vfs.state.registry import AgentRecord, Registry


def _store_of(registry: Registry, record: AgentRecord) -> BlobStore:
    return open_blob_store(record.id, registry.home, record.db_path.parent)


def _same_place(url: str) -> str:
    return os.path.abspath(url) if "://" not in url else url.rstrip("/")


def _referenced(record: AgentRecord) -> tuple[float, set[str]]:
    """When the read began, and the blobs ``record``'s database names."""
    db = Database(record.db_path, "agent", create=False)
    try:
        started = time.time()  # before the read: a row committed later is covered by grace
        return started, ChunkStore(db).blob_keys()
    finally:
        db.close()


def collect_blobs(
    registry: Registry, agent: str | None = None, *, delete: bool
) -> list[Collection]:
    """Find (and with ``delete``, delete) unreferenced blobs in the stores that this
    home's agents use (only ``agent``'s store when given), one result per store.
    Only a deletion publishes this home's references: a report writes nothing."""
    records = registry.list()
    stores: dict[str, tuple[BlobStore, list[AgentRecord]]] = {}
    for record in records:
        if not record.db_path.exists():
            continue
        store = _store_of(registry, record)
        place = _same_place(store.url)
        stores.setdefault(place, (store, []))[1].append(record)
    if agent is not None:
        wanted = _same_place(_store_of(registry, registry.get(agent)).url)
        stores = {place: found for place, found in stores.items() if place == wanted}
    results = []
    for store, users in stores.values():
        if not store.fs.exists(store.root):
            continue  # never used: nothing to collect, and nothing to create
        read = {}
        for record in users:
            user = _store_of(registry, record)
            read[user.user] = _referenced(record)
            if delete:  # what a deletion relied on is there for other homes to see
                user.publish(*read[user.user])
        results.append(collect(store, read, delete=delete))
    return results
