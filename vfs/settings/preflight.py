"""What a mode switch checks before it moves anything.

A switch that can be seen to fail is refused before it starts, with one line
naming the first path at fault, and changes nothing: names the target cannot
hold (not UTF-8, for the database), paths longer than the target allows
(``PATH_MAX`` and ``NAME_MAX`` of the workspace's filesystem, or of a local
one for sqlite mode), and content larger than the free space where it goes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vfs.backends.base import ROOT_INO, Backend
from vfs.backends.db import Database
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.diff import scan
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.names import NAME_MAX, PATH_MAX, short_path
from vfs.backends.sqlite.backend import SqliteBackend


@dataclass(frozen=True)
class _Entry:
    path: str  # relative to the workspace root
    name: str
    size: int  # bytes of content, 0 for a directory or symlink


def check_switch(db: Database, agent: str, workspace: Path, source: str, target: str) -> None:
    """Raise ``OSError`` with one line if switching ``source`` -> ``target`` cannot succeed."""
    if source == target or (source, target) == ("disk", "hybrid"):
        return  # nothing moves
    refuse = _Refusal(agent, target)
    if target == "sqlite":
        _check_for_database(refuse, _walk(db, workspace, source), db.path.parent)
        return
    backend: Backend = (
        HybridBackend(db, workspace, read_only=True) if source == "hybrid" else SqliteBackend(db)
    )
    try:
        entries = _tree(backend)
        # A commit writes only what the overlay changed; an export writes it all.
        needed = None
        if isinstance(backend, HybridBackend):
            needed = sum(c.size or 0 for c in scan(backend).changes if c.type == "file")
        _check_for_directory(refuse, entries, workspace, needed)
    finally:
        backend.close()


class _Refusal:
    def __init__(self, agent: str, target: str) -> None:
        self.agent = agent
        self.target = target

    def __call__(self, code: int, why: str) -> OSError:
        return OSError(code, f"cannot switch {self.agent} to {self.target} mode: {why}")


def _walk(db: Database, workspace: Path, source: str) -> Iterator[_Entry]:
    if source != "disk":
        backend: Backend = HybridBackend(db, workspace, read_only=True)
        try:
            yield from _tree(backend)
        finally:
            backend.close()
        return
    lower = LowerTree(workspace)
    try:
        pending = [""]
        while pending:
            directory = pending.pop()
            for name, st in lower.listdir(directory):
                path = f"{directory}/{name}" if directory else name
                if stat.S_ISDIR(st.st_mode):
                    pending.append(path)
                size = st.st_size if stat.S_ISREG(st.st_mode) else 0
                yield _Entry(path, name, size)
    finally:
        lower.close()


def _tree(backend: Backend) -> Iterator[_Entry]:
    pending = [("", ROOT_INO)]
    while pending:
        directory, ino = pending.pop()
        for name, attr, _ in list(backend.readdir(ino)):
            path = f"{directory}/{name}" if directory else name
            if attr.is_dir:
                pending.append((path, attr.ino))
            yield _Entry(path, name, attr.size if attr.is_file else 0)


def _shown(path: str) -> str:
    """A path as a message can show it, undecodable bytes escaped."""
    raw = os.fsencode(path).decode("utf-8", "backslashreplace")
    return short_path("/" + raw)


def _check_for_database(refuse: _Refusal, entries: Iterator[_Entry], home: Path) -> None:
    total = 0
    for entry in entries:
        try:
            encoded = entry.path.encode("utf-8")
        except UnicodeEncodeError:
            raise refuse(
                errno.EILSEQ,
                f"{_shown(entry.path)} is not a UTF-8 name, which the database cannot hold;"
                " rename it on disk first",
            ) from None
        full = len(encoded) + 2  # the leading "/" and the NUL
        _check_lengths(refuse, entry, len(entry.name.encode()), full, NAME_MAX, PATH_MAX)
        total += entry.size
    _check_space(refuse, home, total)


def _check_for_directory(
    refuse: _Refusal, entries: Iterator[_Entry], workspace: Path, needed: int | None
) -> None:
    existing = _existing(workspace)
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    prefix = len(os.fsencode(os.path.abspath(workspace)))
    total = 0
    for entry in entries:
        full = prefix + 1 + len(os.fsencode(entry.path)) + 1  # the separator and the NUL
        _check_lengths(refuse, entry, len(os.fsencode(entry.name)), full, name_max, path_max)
        total += entry.size
    _check_space(refuse, existing, total if needed is None else needed)


def _check_lengths(
    refuse: _Refusal, entry: _Entry, name_len: int, path_len: int, name_max: int, path_max: int
) -> None:
    if name_len > name_max:
        raise refuse(
            errno.ENAMETOOLONG,
            f"{_shown(entry.path)}: the name is {name_len} bytes, over the limit of {name_max}",
        )
    if path_len > path_max:
        raise refuse(
            errno.ENAMETOOLONG,
            f"{_shown(entry.path)}: the path would be {path_len - 1} bytes, over the limit"
            f" of {path_max - 1}; move it higher up first",
        )


def _check_space(refuse: _Refusal, where: Path, needed: int) -> None:
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise refuse(
            errno.ENOSPC,
            f"{needed} bytes to move, {free} free on the filesystem of {where}",
        )


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the switch creates the rest)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
