"""The storage side of a workspace mode switch: moving a tree between layouts.

Every function here can be interrupted and run again: an import starts over
from an empty file table, an export rewrites the directory to match, and a
materialisation leaves a valid overlay after each file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass

from vfs.backends.base import ROOT_INO, Backend
from vfs.backends.db import Database
from vfs.backends.host import make_node
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.progress import Progress, no_progress
from vfs.backends.sqlite.backend import SqliteBackend
from vfs.backends.steps import step

_TEMP_PREFIX = ".agentvfs-tmp-"
_COPY = 1 << 20


@dataclass(frozen=True)
class PendingSwitch:
    from_mode: str
    to_mode: str
    force: bool


def pending_switch(db: Database) -> PendingSwitch | None:
    row = db.one("SELECT from_mode, to_mode, force FROM mode_switch WHERE id = 1")
    return None if row is None else PendingSwitch(row[0], row[1], bool(row[2]))


def begin_switch(db: Database, from_mode: str, to_mode: str, force: bool) -> None:
    with db.write():
        db.execute(
            "INSERT INTO mode_switch (id, from_mode, to_mode, force, started_at)"
            " VALUES (1, ?, ?, ?, ?)",
            (from_mode, to_mode, int(force), time.time()),
        )


def end_switch(db: Database) -> None:
    with db.write():
        db.execute("DELETE FROM mode_switch")


def clear_files(db: Database) -> None:
    """Empty the file tables (the root stays): the tree now lives elsewhere."""
    with db.write():
        for table in ("overlay_commit_ops", "overlay_whiteouts", "overlay_nodes", "entries"):
            db.execute(f"DELETE FROM {table}")
        db.execute("DELETE FROM orphans")
        db.execute("DELETE FROM inodes WHERE ino != ?", (ROOT_INO,))
        db.execute("UPDATE inodes SET nlink = 2, size = 0 WHERE ino = ?", (ROOT_INO,))


def drop_overlay(db: Database) -> None:
    """Forget overlay bookkeeping once the upper layer is the whole tree."""
    with db.write():
        db.execute("DELETE FROM overlay_whiteouts")
        db.execute("DELETE FROM overlay_nodes")


# -- disk -> database --------------------------------------------------------------


def import_tree(
    db: Database, directory: os.PathLike[str] | str, progress: Progress = no_progress
) -> int:
    """Copy a disk tree into an empty sqlite-mode file table; returns files copied.

    Symlinks are copied as symlinks and never followed; FIFOs, sockets and
    devices as nodes of their type.
    """
    backend = SqliteBackend(db)
    lower = LowerTree(directory)
    copied = 0
    dated: list[tuple[int, os.stat_result]] = []  # directory times, set once filled
    try:
        pending = [("", ROOT_INO)]
        while pending:
            path, ino = pending.pop()
            with db.write():
                for name, st in lower.listdir(path):
                    child = f"{path}/{name}" if path else name
                    mode = stat.S_IMODE(st.st_mode)
                    if stat.S_ISDIR(st.st_mode):
                        attr = backend.mkdir(ino, name, mode, st.st_uid, st.st_gid)
                        pending.append((child, attr.ino))
                        dated.append((attr.ino, st))
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        attr = backend.symlink(
                            ino, name, lower.readlink(child), st.st_uid, st.st_gid
                        )
                    elif stat.S_ISREG(st.st_mode):
                        handle, attr = backend.create(ino, name, mode, st.st_uid, st.st_gid)
                        with handle, lower.fd(child, os.O_RDONLY) as source:
                            offset = 0
                            while data := os.pread(source, _COPY, offset):
                                handle.write(offset, data)
                                offset += len(data)
                        copied += 1
                        progress(copied, None)
                    else:  # a FIFO, socket or device: the node itself, no content
                        attr = backend.mknod(
                            ino, name, st.st_mode, st.st_rdev, st.st_uid, st.st_gid
                        )
                    backend.setattr(attr.ino, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
            step()
        with db.write():  # creating a child moves its directory's mtime, so this comes last
            for ino, st in [(ROOT_INO, lower.lstat("")), *dated]:
                backend.setattr(ino, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
    finally:
        lower.close()
        backend.close()
    return copied


# -- database -> disk --------------------------------------------------------------


def export_tree(
    backend: Backend, directory: os.PathLike[str] | str, progress: Progress = no_progress
) -> int:
    """Make ``directory`` hold exactly ``backend``'s tree; returns files written.

    Each file is written to a temporary name and renamed over the old one;
    entries the tree does not have are removed.
    """
    os.makedirs(directory, exist_ok=True)
    disk = LowerTree(directory)
    written = 0
    dated = [("", backend.getattr(ROOT_INO))]  # directory times, set once filled
    try:
        pending = [("", ROOT_INO)]
        while pending:
            path, ino = pending.pop()
            with disk.fd(path, os.O_RDONLY | os.O_DIRECTORY) as parent:
                wanted = set()
                for name, attr, _ in list(backend.readdir(ino)):
                    wanted.add(name)
                    child = f"{path}/{name}" if path else name
                    current = _lstat(name, parent)
                    if attr.is_dir:
                        if current is not None and not stat.S_ISDIR(current.st_mode):
                            os.unlink(name, dir_fd=parent)
                            current = None
                        if current is None:
                            os.mkdir(name, 0o700, dir_fd=parent)
                        with disk.fd(child, os.O_RDONLY | os.O_DIRECTORY) as fd:
                            os.fchmod(fd, stat.S_IMODE(attr.mode))
                        pending.append((child, attr.ino))
                        dated.append((child, attr))
                        continue
                    if current is not None and stat.S_ISDIR(current.st_mode):
                        shutil.rmtree(name, dir_fd=parent)
                    temp = _TEMP_PREFIX + name[:200]
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp, dir_fd=parent)
                    if attr.is_link:
                        os.symlink(backend.readlink(attr.ino), temp, dir_fd=parent)
                        os.utime(
                            temp,
                            ns=(attr.atime_ns, attr.mtime_ns),
                            dir_fd=parent,
                            follow_symlinks=False,
                        )
                    elif attr.is_file:
                        _write_file(backend, attr.ino, temp, parent, attr.mode, attr.mtime_ns)
                        written += 1
                        progress(written, None)
                    elif attr.is_special:
                        make_node(temp, attr.mode, attr.rdev, attr.mtime_ns, dir_fd=parent)
                    else:
                        continue
                    os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
                for name in os.listdir(parent):
                    if name not in wanted and not (not path and name == ".vfs"):
                        st = _lstat(name, parent)
                        if st is not None and stat.S_ISDIR(st.st_mode):
                            shutil.rmtree(name, dir_fd=parent)
                        elif st is not None:
                            os.unlink(name, dir_fd=parent)
                os.fsync(parent)
            step()
        for path, attr in dated:  # after every child is in place: creating one moves the mtime
            with disk.fd(path, os.O_RDONLY | os.O_DIRECTORY) as fd:
                os.utime(fd, ns=(attr.atime_ns, attr.mtime_ns))
    finally:
        disk.close()
    return written


def _lstat(name: str, parent: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return None


def _write_file(backend: Backend, ino: int, temp: str, parent: int, mode: int, mtime: int) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
    try:
        with backend.open(ino) as handle:
            offset = 0
            while data := handle.read(offset, _COPY):
                os.pwrite(fd, data, offset)
                offset += len(data)
        os.ftruncate(fd, backend.getattr(ino).size)
        os.fchmod(fd, stat.S_IMODE(mode))
        os.utime(fd, ns=(time.time_ns(), mtime))
        os.fsync(fd)
    finally:
        os.close(fd)


# -- overlay -> database -------------------------------------------------------------


def materialize(backend: HybridBackend, progress: Progress = no_progress) -> int:
    """Copy every lower object and byte into the upper layer; returns files filled in.

    After each file the overlay is still valid and shows the same tree; at the
    end every directory is opaque, so the lower tree no longer matters.
    """
    filled = 0
    pending = [ROOT_INO]
    while pending:
        ino = pending.pop()
        for _name, attr, _ in list(backend.readdir(ino)):
            with backend.db.write():
                backend.copy_up(attr.ino)
                if attr.is_dir:
                    pending.append(attr.ino)
                    continue
                if not backend.tables.fill_from_lower(attr.ino):
                    continue
                filled += 1
            progress(filled, None)
            step()
    with backend.db.write():
        backend.db.execute("UPDATE overlay_nodes SET lower_path = NULL, lower_limit = 0")
    return filled
