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
import os
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

OBJECTS = "objects"


def object_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class Destination:
    """Where backups live: ``objects/`` shared by all, ``backups/<agent>/<id>/`` each."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self.fs, self.root = url_to_fs(url, **storage_options)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self._known: set[str] | None = None

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _object_path(self, key: str) -> str:
        return self.path(OBJECTS, key[:2], key)

    # -- objects -----------------------------------------------------------

    def keys(self) -> set[str]:
        """The objects the destination holds: one listing, then kept up to date
        by :meth:`put_many` (a request per object would dominate on object storage)."""
        if self._known is None:
            try:
                found = self.fs.find(self.path(OBJECTS))
            except FileNotFoundError:
                found = []
            self._known = {p.rsplit("/", 1)[-1] for p in found if not p.endswith(".partial")}
        return self._known

    def forget_listing(self) -> None:
        self._known = None

    def put_many(self, pieces: list[bytes]) -> list[tuple[str, bool]]:
        """Store each piece; returns each one's key and whether it was new."""
        known = self.keys()
        result, upload = [], {}
        for data in pieces:
            key = object_key(data)
            new = key not in known and self._object_path(key) not in upload
            if new:
                upload[self._object_path(key)] = data
            result.append((key, new))
        if self.local:
            for path, data in upload.items():
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                # Written under another name first: a reader never sees a torn object.
                self.fs.pipe_file(f"{path}.partial", data)
                os.replace(f"{path}.partial", path)
        elif upload:
            self.fs.pipe(upload)  # one concurrent batch; an object PUT is atomic
        known.update(path.rsplit("/", 1)[-1] for path in upload)
        return result

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; returns its key and whether it was new."""
        return self.put_many([data])[0]

    def get_many(self, keys: list[str]) -> list[bytes]:
        """The bytes of each object, fetched together; ``OSError(EIO)`` for any that
        does not match its name, ``FileNotFoundError`` for any that is missing."""
        paths = [self._object_path(key) for key in keys]
        fetched = self.fs.cat(paths, on_error="return") if len(paths) > 1 else {}
        out = []
        for key, path in zip(keys, paths, strict=True):
            data = fetched.get(path) if fetched else None
            if data is None or isinstance(data, Exception):
                try:
                    data = self.fs.cat_file(path)
                except FileNotFoundError:
                    raise FileNotFoundError(
                        errno.ENOENT, "backup object is missing", path
                    ) from None
            if object_key(data) != key:
                raise OSError(errno.EIO, "backup object is damaged", path)
            out.append(bytes(data))
        return out

    def get(self, key: str) -> bytes:
        """The bytes of object ``key``; ``OSError(EIO)`` if they do not match it."""
        return self.get_many([key])[0]

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
