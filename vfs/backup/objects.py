"""Content-addressed objects in a backup destination: a local directory or any
fsspec URL (``s3://bucket/prefix``).

An object is named by the BLAKE2b-256 digest of its bytes, so the same bytes
are stored once however many backups and agents hold them, and a name can be
checked against what it holds. (Chunks inside a database are keyed by
xxh3-128, which is fast but not collision-resistant; names shared across
agents and machines need a cryptographic digest.)
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.core import url_to_fs

OBJECTS = "objects"


def object_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class Destination:
    """Where backups live: ``objects/`` shared by all, ``backups/<agent>/<id>/`` each."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self.fs, self.root = url_to_fs(url, **storage_options)
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _object_path(self, key: str) -> str:
        return self.path(OBJECTS, key[:2], key)

    # -- objects -----------------------------------------------------------

    def has(self, key: str) -> bool:
        return bool(self.fs.exists(self._object_path(key)))

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; returns its key and whether it was new."""
        key = object_key(data)
        if self.has(key):
            return key, False
        path = self._object_path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{path}.partial"
        # Written under another name first: a reader never sees a torn object.
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, path)
        return key, True

    def get(self, key: str) -> bytes:
        """The bytes of object ``key``; ``OSError(EIO)`` if they do not match it."""
        try:
            data = self.fs.cat_file(self._object_path(key))
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "backup object is missing", self._object_path(key)
            ) from None
        if object_key(data) != key:
            raise OSError(errno.EIO, "backup object is damaged", self._object_path(key))
        return bytes(data)

    def size(self, key: str) -> int:
        return int(self.fs.size(self._object_path(key)))

    # -- files of one backup -------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def read_bytes(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path))

    def write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def listdir(self, path: str) -> Iterator[str]:
        """Names of the directories directly under ``path``; none if it does not exist."""
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry["type"] == "directory":
                yield entry["name"].rstrip("/").rsplit("/", 1)[-1]

    def remove_tree(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)


def open_destination(url: str, *, create: bool = False) -> Destination:
    """A destination for a local path or an fsspec URL; options come from fsspec's
    configuration (``FSSPEC_S3_ENDPOINT_URL`` and the like)."""
    if create and "://" not in url:
        fsspec.filesystem("file").makedirs(url, exist_ok=True)
    return Destination(url)
