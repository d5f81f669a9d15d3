"""The blob store: large file content kept outside the agent database.

A chunk of a file at least :attr:`BlobStore.threshold` bytes long is written
here instead of into its ``chunks`` row, which then names it (the ``blob``
column, see ``schema/agent/0008_blobs.sql``). The store is a local directory
(``<home>/agents/<agent>/blobs/`` by default) or any fsspec URL
(``s3://bucket/prefix``), and may be shared by many agents on many machines::

    <root>/<kk>/<key>          a blob: its bytes, named by their SHA-256
    <root>/users/<user>.json   one per agent that uses the store: which blobs it
                               referenced when it last published (for collection)

Names are a cryptographic digest, so two agents that write the same bytes
share one blob and a collision cannot hand one agent another's bytes (xxh3,
the chunk hash inside a database, is not collision-resistant).

Ordering keeps rows and blobs consistent without a transaction spanning both:
a blob is written (atomically: a temporary name, then a rename; an object PUT)
before the row that names it commits, and is never deleted by the transaction
that drops its last row. Unreferenced blobs are collected later by
:func:`collect`, which deletes a blob only when no agent using the store
references it and it is older than the grace period *before* the oldest
publication of every user: a writer between its blob write and its commit
(which takes less than the grace period) is never robbed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import xxhash
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vfs.backends import steps

#: seconds a blob nothing references is kept before collection may delete it
DEFAULT_GRACE = 3600.0
USERS = "users"


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def user_id(agent: str, home: str) -> str:
    """Who uses a store: one agent of one home on one machine."""
    raw = f"{socket.gethostname()}:{os.path.abspath(home)}:{agent}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def _mtime(info: dict[str, Any]) -> float:
    """When an object was last written, from an fsspec listing entry."""
    for name in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return time.time()  # unknown: treat as new, so it is never collected early


class BlobStore:
    """One blob store, as the agent ``agent`` of ``home`` uses it.

    ``threshold``: files at least this long keep their chunks here (0: none do,
    but blobs already written are still read). ``grace``: seconds an
    unreferenced blob is kept.
    """

    def __init__(
        self, url: str, *, agent: str, home: str, threshold: int, grace: float = DEFAULT_GRACE
    ) -> None:
        self.url = url
        self.fs, root = url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self.agent = agent
        self.home = home
        self.threshold = threshold
        self.grace = grace
        self.user = user_id(agent, home)
        self._registered = False

    def path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}"

    def spills(self, size: int) -> bool:
        """Whether a file ``size`` bytes long keeps its chunks here."""
        return 0 < self.threshold <= size

    # -- writing and reading -----------------------------------------------------

    def put(self, data: bytes) -> str:
        """Store ``data`` (durably, before the caller commits a row naming it); its key."""
        key = blob_key(data)
        if not self._registered:
            self.register()
        path = self.path(key)
        if not self.local:
            # Written even if present: the PUT renews its time, so collection,
            # which spares young blobs, cannot take it before the row commits.
            self.fs.pipe_file(path, data)
            steps.blob_written()
            return key
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # present: renewed for the same reason
            return key
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)  # a reader never sees a torn blob
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # a full disk must not keep what it could not finish
            raise
        # Durable before the row that names it can be: the name as well as the bytes.
        directory = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        steps.blob_written()
        return key

    def get(self, key: str, offset: int, size: int, digest: bytes, where: str) -> bytes:
        """Bytes ``[offset, offset + size)`` of blob ``key``, checked against the chunk
        hash ``digest``; ``OSError(EIO)`` naming ``where`` if missing or damaged."""
        path = self.path(key)
        try:
            if self.local:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    data = os.pread(fd, size, offset)
                finally:
                    os.close(fd)
            else:
                data = bytes(self.fs.cat_file(path, start=offset, end=offset + size))
        except FileNotFoundError:
            raise OSError(
                errno.EIO, f"stored content is missing (blob {key} in {self.url})", where
            ) from None
        if len(data) != size or xxhash.xxh3_128_digest(data) != digest:
            raise OSError(errno.EIO, f"stored content is corrupt (blob {key} damaged)", where)
        return data

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def damaged(self, key: str) -> bool:
        """Whether blob ``key`` is present but its bytes do not hash to its name."""
        try:
            return blob_key(bytes(self.fs.cat_file(self.path(key)))) != key
        except FileNotFoundError:
            return False

    def listing(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every blob in the store and when it was last written; and the temporary
        files of writes that never finished (a writer killed mid-write), by path."""
        self.fs.invalidate_cache()  # object storage listings are cached: look again
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}, {}
        blobs, temporary = {}, {}
        for name, info in found.items():
            key = name.rsplit("/", 1)[-1]
            if f"/{USERS}/" in name:
                continue
            if name.endswith(".tmp"):
                temporary[name] = _mtime(info)
            elif len(key) == 64:
                blobs[key] = _mtime(info)
        return blobs, temporary

    def delete_if_old(self, key: str, before: float) -> bool:
        """Delete blob ``key`` unless it was written at or after ``before``."""
        path = self.path(key)
        if not self.local:
            # Asked afresh, not from a cached listing. A writer that re-uploads the
            # blob between this check and the delete loses it: the one window a
            # store without rename has (see docs/operations.md).
            self.fs.invalidate_cache(path)
            try:
                if _mtime(self.fs.info(path)) >= before:
                    return False
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True
        # Moved aside first: a writer renewing it now fails to find it and
        # writes it again, or renewed it just before, which the check sees.
        aside = f"{path}.{os.getpid()}-gc.tmp"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime >= before:
            with contextlib.suppress(OSError):
                os.link(aside, path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    # -- users, for collection -----------------------------------------------------

    def _user_path(self, user: str) -> str:
        return f"{self.root}/{USERS}/{user}.json"

    def register(self) -> None:
        """Note in the store that this agent uses it, before its first blob:
        collection waits until every user has published what it references."""
        path = self._user_path(self.user)
        if not self.fs.exists(path):
            self._write_user(None, None)
        self._registered = True

    def _write_user(self, published_at: float | None, keys: Iterable[str] | None) -> None:
        note = {
            "agent": self.agent,
            "home": os.path.abspath(self.home),
            "host": socket.gethostname(),
            "published_at": published_at,
            "keys": None if keys is None else sorted(keys),
        }
        path = self._user_path(self.user)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.local:
            temp = f"{path}.{os.getpid()}.tmp"
            self.fs.pipe_file(temp, json.dumps(note).encode())
            os.replace(temp, path)
        else:
            self.fs.pipe_file(path, json.dumps(note).encode())

    def publish(self, published_at: float, keys: Iterable[str]) -> None:
        """Record the blobs this agent referenced in a read that began after ``published_at``."""
        self._write_user(published_at, keys)

    def unregister(self) -> None:
        """This agent no longer uses the store (it was deleted)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._user_path(self.user))

    def users(self) -> dict[str, dict[str, Any]]:
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(f"{self.root}/{USERS}")
        except FileNotFoundError:
            return {}
        out = {}
        for path in found:
            if path.endswith(".json"):
                with contextlib.suppress(FileNotFoundError, ValueError):
                    out[path.rsplit("/", 1)[-1][:-5]] = json.loads(self.fs.cat_file(path))
        return out


@dataclass
class Collection:
    """What one collection found in a store."""

    url: str
    orphans: list[str] = field(default_factory=list)  # unreferenced and past the grace period
    deleted: int = 0
    waiting_for: list[str] = field(default_factory=list)  # users that never published


def collect(
    store: BlobStore, read: dict[str, tuple[float, set[str]]], *, delete: bool
) -> Collection:
    """Find (and with ``delete``, delete) the blobs no user of ``store`` references.

    ``read``: for each user this caller could read itself, when that read
    began and the keys it references (published with :meth:`BlobStore.publish`
    first when deleting; a report changes nothing in the store). Users of
    other homes and machines count through what they last published; while
    one of them never has, nothing is collected.
    """
    result = Collection(store.url)
    users = store.users()
    for user, (began, keys) in read.items():
        users[user] = {"published_at": began, "keys": keys}
    referenced: set[str] = set()
    oldest = time.time()
    for note in users.values():
        if note.get("keys") is None or note.get("published_at") is None:
            result.waiting_for.append(f"{note.get('agent')} on {note.get('host')}")
            continue
        referenced.update(note["keys"])
        oldest = min(oldest, float(note["published_at"]))
    if result.waiting_for:
        return result
    before = oldest - store.grace
    blobs, temporary = store.listing()
    for key, written in sorted(blobs.items()):
        if key in referenced or written >= before:
            continue
        result.orphans.append(key)
        if delete and store.delete_if_old(key, before):
            result.deleted += 1
    for path, written in sorted(temporary.items()):
        if written < before:  # past the grace period, no writer is still at it
            result.orphans.append(path)
            if delete:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.rm_file(path)
                    result.deleted += 1
    return result
