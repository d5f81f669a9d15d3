"""A host directory tree as backup objects: what disk mode's workspace and
hybrid mode's lower tree hold, stored and restored with modes, times, symlinks
and special files (FIFOs, sockets and devices, as nodes with their ``rdev``)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vfs.backends.base import SPECIAL_TYPES
from vfs.backends.disk.backend import TEMP_PREFIX
from vfs.backends.host import make_node
from vfs.backup.objects import Destination

PIECE = 1 << 20  # files are stored in 1 MiB objects
ATTEMPTS = 3  # reads of a file that changed while it was read, before giving up on it


def _walk(root: Path, relative: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every object under ``root`` (directories before their contents), symlinks
    unfollowed; what disappears while the walk goes on is left out, as are the
    nameless files of writes still under way."""
    try:
        with os.scandir(root / relative if relative else root) as entries:
            found = sorted(entries, key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in found:
        if entry.name.startswith(TEMP_PREFIX):
            continue
        path = f"{relative}/{entry.name}" if relative else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, path)


def _store_file(
    dest: Destination, path: Path, on_new: Callable[[int], None]
) -> tuple[list[str], os.stat_result] | None:
    """The object keys of one file's content, read so that no piece mixes two
    versions: the file must look the same (size, mtime) before and after."""
    for _ in range(ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None  # deleted meanwhile: not part of the tree any more
        try:
            before = os.fstat(fd)
            keys = []
            while piece := os.read(fd, PIECE):
                key, new = dest.put(piece)
                if new:
                    on_new(len(piece))
                keys.append(key)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            return keys, after
    return None


def store_tree(
    dest: Destination, root: Path, on_new: Callable[[int], None], on_file: Callable[[], None]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Store every file of ``root`` as objects; returns the tree's entries and the
    paths that kept changing while they were read (left out)."""
    entries: list[dict[str, Any]] = []
    unstable: list[str] = []
    for path, st in _walk(root):
        entry: dict[str, Any] = {
            "path": path, "mode": st.st_mode, "mtime_ns": st.st_mtime_ns, "size": st.st_size,
        }  # fmt: skip
        if stat.S_ISREG(st.st_mode):
            stored = _store_file(dest, root / path, on_new)
            if stored is None:
                if os.path.lexists(root / path):
                    unstable.append(path)
                continue
            entry["objects"], final = stored
            entry["size"], entry["mtime_ns"] = final.st_size, final.st_mtime_ns
            on_file()
        elif stat.S_ISLNK(st.st_mode):
            try:
                entry["target"] = os.fsdecode(os.readlink(root / path))
            except FileNotFoundError:
                continue
        elif not stat.S_ISDIR(st.st_mode):  # a FIFO, socket or device: the node alone
            entry["rdev"] = st.st_rdev
        entries.append(entry)
    return entries, unstable


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def restore_tree(
    dest: Destination, root: Path, entries: list[dict[str, Any]], on_file: Callable[[], None]
) -> None:
    """Recreate a tree stored by :func:`store_tree` under the empty directory ``root``,
    checking every object against its name."""
    directories: list[dict[str, Any]] = []
    for entry in entries:
        target = root / entry["path"]
        mode = entry["mode"]
        if stat.S_ISDIR(mode):
            target.mkdir(mode=0o700)
            directories.append(entry)
        elif stat.S_ISLNK(mode):
            os.symlink(entry["target"], target)
            os.utime(target, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)
        elif stat.S_IFMT(mode) in SPECIAL_TYPES:
            make_node(target, mode, int(entry.get("rdev", 0)), entry["mtime_ns"])
        else:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                for key in entry["objects"]:
                    _write_all(fd, dest.get(key))
                os.fchmod(fd, stat.S_IMODE(mode))
            finally:
                os.close(fd)
            os.utime(target, ns=(entry["mtime_ns"], entry["mtime_ns"]))
            on_file()
    # Directory times and modes last: creating their children changed them.
    for entry in reversed(directories):
        target = root / entry["path"]
        with contextlib.suppress(PermissionError):
            os.chmod(target, stat.S_IMODE(entry["mode"]))
        os.utime(target, ns=(entry["mtime_ns"], entry["mtime_ns"]))
