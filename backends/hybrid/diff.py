"""What a hybrid overlay changed against its lower tree, and what committing takes.

:func:`scan` walks the upper layer once (lower-only subtrees hold no changes,
so they are not walked) and returns both the user-facing :class:`Change` list
and the disk :class:`Action` list a commit performs, each action tagged with
the change it belongs to so a commit of some paths, or one with conflicts,
can leave the rest alone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from typing import Any

from vfs.backends.base import ROOT_INO
from vfs.backends.host import join
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.lower import tree_stamp as tree_stamp  # where callers look for it

# Commit phases, in order. Nothing is removed before every new byte is staged;
# what is in the way of a new object goes before it is placed; the database
# forgets placed changes (SETTLE) before deleted and moved-away paths are
# removed (REMOVE), and their whiteouts go last (FORGET), so that the merged
# view is whole at every point a commit can be interrupted.
STAGE, CLEAR_WAY, PLACE, METADATA, SETTLE, REMOVE, FORGET = 1, 2, 3, 4, 5, 6, 7
DATABASE_OPS = ("clear_entry", "clear_whiteout", "settle_dir")
# File times come from the kernel's coarse clock, which may lag the one the
# overlay stamps its rows with by a tick; compare with this much to spare.
CLOCK_SLACK_NS = 10_000_000


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def related(path: str, scope: str) -> bool:
    """``path`` is ``scope``, inside it, or one of its ancestors."""
    return (
        not scope
        or path == scope
        or path.startswith(scope + "/")
        or scope.startswith(path + "/")
        or not path
    )


@dataclass(frozen=True)
class Change:
    """One changed path. Deleted paths and ``old_path`` are where things were on disk."""

    kind: str  # "added" | "modified" | "deleted" | "renamed"
    path: str
    type: str  # "file" | "dir" | "symlink" | "other"
    size: int | None = None
    old_path: str | None = None
    old_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Action:
    phase: int
    op: str
    path: str = ""
    group: str = ""  # the change's path: scope and conflict filtering
    old_group: str | None = None
    source: str | None = None
    ino: int | None = None
    parent: int | None = None
    name: str | None = None
    mode: int | None = None
    mtime_ns: int | None = None
    stamp: str | None = None
    staged: str | None = None


@dataclass(frozen=True)
class Check:
    """What the disk at ``path`` must still look like for change ``group`` to commit."""

    group: str
    path: str
    size: int | None = None
    mtime_ns: int | None = None
    digest: str | None = None
    absent: bool = False  # an added path must not have appeared on disk meanwhile
    deleted: bool = False  # a missing file is fine for a deletion
    # a directory tree the commit removes: nothing in it may have changed after this
    unchanged_since: int | None = None


@dataclass
class Scan:
    changes: list[Change] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # change -> the lower paths it moves away, whose bytes it (and what is under
    # them, for a directory) reads until committed
    reads: dict[str, set[str]] = field(default_factory=dict)


class _Scanner:
    def __init__(self, backend: HybridBackend) -> None:
        self.backend = backend
        self.db = backend.db
        self.lower = backend.lower
        self.scan = Scan()
        self.staged = 0
        rows = self.db.query("SELECT lower_path FROM overlay_nodes WHERE lower_path IS NOT NULL")
        self.kept_sources = {r[0] for r in rows}
        # lower path -> the whiteout that hides it, to clear when its rename commits
        self.whiteout_at: dict[str, tuple[int, str]] = {}
        for parent, name, lower_dir in self.db.query(
            "SELECT w.parent, w.name, n.lower_path FROM overlay_whiteouts w"
            " JOIN overlay_nodes n ON n.ino = w.parent WHERE n.lower_path IS NOT NULL"
        ):
            self.whiteout_at[join(lower_dir, name)] = (parent, name)

    def add(self, action: Action) -> None:
        self.scan.actions.append(action)

    def stage(self, path: str, group: str, **content: Any) -> None:
        self.staged += 1
        name = str(self.staged)
        self.add(Action(STAGE, "stage", path, group, staged=name, **content))
        self.add(Action(PLACE, "place", path, group, staged=name))

    def run(self) -> Scan:
        root_lower = self.db.value(
            "SELECT lower_path FROM overlay_nodes WHERE ino = ?", (ROOT_INO,)
        )
        self.visit(ROOT_INO, "", root_lower, relocated=False, group=None)
        # A late removal must not delete what was just placed at or under its path.
        targets = [a.path for a in self.scan.actions if a.phase == PLACE]
        for action in self.scan.actions:
            if action.phase == REMOVE and any(
                t == action.path or t.startswith(action.path + "/") for t in targets
            ):
                action.phase = CLEAR_WAY
        return self.scan

    def visit(
        self, ino: int, path: str, lower_dir: str | None, *, relocated: bool, group: str | None
    ) -> None:
        rows = self.db.query(
            "SELECT e.name, e.ino, i.mode, i.size, i.mtime_ns, i.ctime_ns, n.lower_path,"
            " n.lower_limit, n.base_size, n.base_mtime_ns, n.base_hash,"
            " EXISTS (SELECT 1 FROM file_chunks f WHERE f.ino = e.ino), i.btime_ns"
            " FROM entries e JOIN inodes i ON i.ino = e.ino"
            " LEFT JOIN overlay_nodes n ON n.ino = e.ino WHERE e.parent = ? ORDER BY e.name",
            (ino,),
        )
        whiteouts = {
            r[0]: r[1:]
            for r in self.db.query(
                "SELECT name, base_size, base_mtime_ns, base_hash FROM overlay_whiteouts"
                " WHERE parent = ?",
                (ino,),
            )
        }
        upper_names = {r[0] for r in rows}
        if lower_dir is not None:
            for name, (size, mtime_ns, digest) in sorted(whiteouts.items()):
                if name not in upper_names:
                    self.deleted(ino, name, join(lower_dir, name), (size, mtime_ns, digest), group)
            if relocated:
                for name, st in self.lower.listdir(lower_dir):
                    if name not in upper_names and name not in whiteouts:
                        self.copy_lower(join(lower_dir, name), join(path, name), st, group or path)
        for row in rows:
            name = row[0]
            expected = join(lower_dir, name) if lower_dir is not None else None
            whited = whiteouts.get(name)
            if stat.S_ISDIR(row[2]):
                self.directory(ino, path, row, expected, whited, relocated, group)
            else:
                self.file(ino, path, row, expected, whited, relocated, group)

    def deleted(
        self,
        parent: int,
        name: str,
        lower_path: str,
        baseline: tuple[int | None, int | None, str | None],
        group: str | None,
    ) -> None:
        if lower_path in self.kept_sources:
            return  # moved, not deleted: the rename's change covers it
        self.add(Action(FORGET, "clear_whiteout", lower_path, lower_path, parent=parent, name=name))
        st = self.lower.lstat_or_none(lower_path)
        kind = kind_of(st.st_mode) if st is not None else "file"
        self.scan.changes.append(Change("deleted", lower_path, kind, old_size=baseline[0]))
        # Inside a moved directory the source is removed whole, with the move's change;
        # a disk edit of the deleted file since must block that move.
        self.scan.checks.append(Check(group or lower_path, lower_path, *baseline, deleted=True))
        if group is None:
            self.add(Action(REMOVE, "remove", lower_path, lower_path))

    def copy_lower(self, source: str, target: str, st: os.stat_result, group: str) -> None:
        """A lower-only object inside a directory that moves: copied to its new place."""
        if stat.S_ISDIR(st.st_mode):
            self.add(Action(PLACE, "mkdir", target, group, mode=stat.S_IMODE(st.st_mode)))
            for name, child in self.lower.listdir(source):
                self.copy_lower(join(source, name), join(target, name), child, group)
        else:  # a file, symlink, FIFO, socket or device
            self.stage(target, group, source=source, mode=stat.S_IMODE(st.st_mode),
                       mtime_ns=st.st_mtime_ns)  # fmt: skip

    def directory(
        self,
        parent: int,
        path: str,
        row: Any,
        expected: str | None,
        whited: Any,
        relocated: bool,
        group: str | None,
    ) -> None:
        name, ino, mode, _size, _mtime, _ctime, lower_path = row[:7]
        child = join(path, name)
        if lower_path is not None and lower_path == expected and not relocated:
            lower = self.lower.lstat_or_none(lower_path)
            if lower is not None and stat.S_IMODE(lower.st_mode) != stat.S_IMODE(mode):
                self.scan.changes.append(Change("modified", child, "dir"))
                self.add(Action(METADATA, "chmod", child, group or child, mode=stat.S_IMODE(mode)))
            self.visit(ino, child, lower_path, relocated=False, group=group)
            return
        g = group or child
        renamed = lower_path is not None and lower_path != expected
        if renamed:
            self.scan.changes.append(Change("renamed", child, "dir", old_path=lower_path))
            self.moved_source(lower_path, g)
        elif lower_path is None and not relocated:
            self.scan.changes.append(Change("modified" if whited else "added", child, "dir"))
        if whited is not None and not relocated:
            # A new directory was made after the old one was hidden: anything in
            # the old tree changed later is a disk edit the removal would destroy.
            # (A lower directory moved here replaced an empty one: its own times suffice.)
            since = int(row[12]) - CLOCK_SLACK_NS if lower_path is None else None
            self.scan.checks.append(
                Check(g, expected or child, whited[0], whited[1], whited[2], unchanged_since=since)
            )
            self.add(Action(CLEAR_WAY, "remove", expected or child, g))
            self.add(Action(SETTLE, "clear_whiteout", child, g, parent=parent, name=name))
        elif lower_path is None and not relocated and group is None:
            self.scan.checks.append(Check(g, child, absent=True))
        self.add(Action(PLACE, "mkdir", child, g, mode=stat.S_IMODE(mode)))
        self.add(Action(SETTLE, "settle_dir", child, g, ino=ino))
        self.visit(ino, child, lower_path, relocated=lower_path is not None, group=g)

    def reads(self, group: str, lower_path: str) -> None:
        self.scan.reads.setdefault(group, set()).add(lower_path)

    def moved_source(self, lower_path: str, group: str) -> None:
        self.reads(group, lower_path)
        self.add(Action(REMOVE, "remove", lower_path, group, old_group=lower_path))
        where = self.whiteout_at.get(lower_path)
        if where is not None:
            self.add(
                Action(FORGET, "clear_whiteout", lower_path, group, parent=where[0], name=where[1])
            )

    def file(
        self,
        parent: int,
        path: str,
        row: Any,
        expected: str | None,
        whited: Any,
        relocated: bool,
        group: str | None,
    ) -> None:
        name, ino, mode, size, mtime_ns, ctime_ns, lower_path, limit = row[:8]
        base_size, base_mtime, base_hash, has_chunks = row[8:12]
        child = join(path, name)
        kind = kind_of(mode)
        stamp = f"{size}:{mtime_ns}:{ctime_ns}"
        content_changed = bool(has_chunks) or size != base_size or limit < (base_size or 0)
        clear = Action(SETTLE, "clear_entry", child, group or child, ino=ino, parent=parent,
                       name=name, stamp=stamp)  # fmt: skip
        if lower_path is not None and lower_path == expected and not relocated:
            lower = self.lower.lstat_or_none(lower_path)
            meta_changed = (
                lower is None
                or stat.S_IMODE(lower.st_mode) != stat.S_IMODE(mode)
                or mtime_ns != base_mtime  # a disk touch since the copy-up is not the overlay's
            )
            if kind == "file" and not (content_changed or meta_changed):
                return  # copied up, but nothing that shows on disk changed
            self.scan.checks.append(Check(child, lower_path, base_size, base_mtime, base_hash))
            if kind == "file" and not content_changed:
                # Only the mode or mtime changed: the disk keeps its bytes (which
                # --force may keep over a disk edit), and an mtime the overlay never
                # set is not put back over a newer one.
                on_disk = lower.st_size if lower is not None else size
                self.scan.changes.append(Change("modified", child, kind, on_disk, old_size=on_disk))
                self.add(Action(METADATA, "chmod", child, child, mode=stat.S_IMODE(mode),
                                mtime_ns=None if mtime_ns == base_mtime else mtime_ns))  # fmt: skip
            else:
                self.scan.changes.append(Change("modified", child, kind, size, old_size=base_size))
                self.stage(child, child, ino=ino, mode=stat.S_IMODE(mode), mtime_ns=mtime_ns)
            self.add(clear)
            return
        g = group or child
        renamed = lower_path is not None and lower_path != expected
        if renamed:
            self.scan.changes.append(
                Change("renamed", child, kind, size, old_path=lower_path, old_size=base_size)
            )
            self.scan.checks.append(Check(g, lower_path, base_size, base_mtime, base_hash))
            self.moved_source(lower_path, g)
        elif lower_path is None:
            old_size = whited[0] if whited is not None else None
            kind_of_change = "modified" if whited is not None else "added"
            self.scan.changes.append(Change(kind_of_change, child, kind, size, old_size=old_size))
        else:  # copied up inside a moved directory: its commit reads the lower file
            self.scan.checks.append(Check(g, lower_path, base_size, base_mtime, base_hash))
            if content_changed:
                self.scan.changes.append(Change("modified", child, kind, size, old_size=base_size))
        old = self.lower.lstat_or_none(expected or child) if whited is not None else None
        replaces_dir = old is not None and stat.S_ISDIR(old.st_mode)
        if whited is not None:
            since = int(row[12]) - CLOCK_SLACK_NS if replaces_dir and lower_path is None else None
            self.scan.checks.append(
                Check(g, expected or child, whited[0], whited[1], whited[2], unchanged_since=since)
            )
        if whited is not None and not relocated:
            if replaces_dir:
                self.add(Action(CLEAR_WAY, "remove", expected or child, g))
            self.add(Action(SETTLE, "clear_whiteout", child, g, parent=parent, name=name))
        elif lower_path is None and not relocated and group is None:
            self.scan.checks.append(Check(g, child, absent=True))
        self.stage(child, g, ino=ino, mode=stat.S_IMODE(mode), mtime_ns=mtime_ns)
        self.add(clear)


def scan(backend: HybridBackend) -> Scan:
    """Every change of the overlay, and the actions that would commit them."""
    with backend.db.read():
        return _Scanner(backend).run()
