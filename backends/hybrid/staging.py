"""Where a hybrid commit stages new files before it renames them into the lower tree.

In the agent's own directory (beside its database) when that is on the same
mount as the lower tree, so that nothing in the lower tree is ever created or
removed but what the overlay changed. Only when a rename from there could not
reach the tree is it a directory in the lower root with a fresh random name.
Either way the place is recorded in the commit's journal (a row of its own),
so that a resumed commit finds it and only that directory is ever removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass

from vfs.backends.hybrid.backend import HybridBackend

_OP = "staging"  # the journal row: ``path`` the location, ``name`` "home" or "lower"
_IN_LOWER_PREFIX = ".agentvfs-staging-"
_OLD = ".agentvfs-commit"  # where journals written before the row existed staged


@dataclass(frozen=True)
class Staging:
    location: str  # absolute, or relative to the lower root when ``in_lower``
    in_lower: bool

    def record(self, backend: HybridBackend) -> None:
        """Journal the place; inside the transaction that writes the plan."""
        backend.db.execute(
            "INSERT INTO overlay_commit_ops (phase, op, path, name, done) VALUES (0, ?, ?, ?, 1)",
            (_OP, self.location, "lower" if self.in_lower else "home"),
        )

    def open(self, backend: HybridBackend) -> int:
        """A descriptor of the staging directory, made if missing."""
        root = backend.lower.root_fd if self.in_lower else None
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.location, 0o700, dir_fd=root)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(self.location, flags, dir_fd=root)

    def remove(self, backend: HybridBackend) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.in_lower:
                shutil.rmtree(self.location, dir_fd=backend.lower.root_fd)
            else:
                shutil.rmtree(self.location)


def _mount_id(fd: int) -> str | None:
    """The id of the mount ``fd`` is on: a rename works only within one."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("mnt_id:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def choose(backend: HybridBackend) -> Staging:
    """Where a new commit stages its files."""
    home = backend.db.path.parent / "commit-staging"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(home)  # left by a commit that was then discarded
    fd = os.open(home.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        lower = backend.lower.root_fd
        same_device = os.fstat(fd).st_dev == os.fstat(lower).st_dev
        same_mount = _mount_id(fd) == _mount_id(lower)
    finally:
        os.close(fd)
    if same_device and same_mount:
        return Staging(str(home), in_lower=False)
    while True:  # a name nobody has: the commit removes it, and only it
        name = _IN_LOWER_PREFIX + secrets.token_hex(8)
        if backend.lower.lstat_or_none(name) is None:
            return Staging(name, in_lower=True)


def recorded(backend: HybridBackend) -> Staging | None:
    """Where the pending commit stages its files; None when no commit is pending."""
    row = backend.db.one("SELECT path, name FROM overlay_commit_ops WHERE op = ?", (_OP,))
    if row is not None:
        return Staging(row[0], in_lower=row[1] == "lower")
    if backend.db.value("SELECT 1 FROM overlay_commit_ops LIMIT 1") is not None:
        return Staging(_OLD, in_lower=True)
    return None
