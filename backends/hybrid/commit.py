"""Commit a hybrid overlay to its disk tree, or discard its changes.

A commit is journaled: the whole plan is written to ``overlay_commit_ops``
before the disk is touched, each step is marked done after it, and the
database rows are cleared only when every disk step is done. The plan orders
the steps so that redoing any of them is harmless: all new content is first
staged (written and fsynced) in a staging directory, then deletions are
applied, then staged files are renamed into place (one atomic replace per
file), then metadata is set. A commit killed at any point is finished by the
next commit (or :func:`resume`).
(:mod:`~vfs.backends.hybrid.staging` says where files are staged.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from vfs.backends.base import ROOT_INO
from vfs.backends.hybrid import staging
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.commit_steps import DiskSteps
from vfs.backends.hybrid.diff import DATABASE_OPS, Action, Change, Check, Scan, related, scan
from vfs.backends.hybrid.lower import TREE_STAMP_PREFIX, hash_fd, tree_stamp
from vfs.backends.progress import Progress, no_progress
from vfs.backends.steps import step

_COLUMNS = (
    "phase", "op", "path", "source", "ino", "parent", "name", "staged", "mode", "mtime_ns", "stamp",
)  # fmt: skip


@dataclass(frozen=True)
class Conflict:
    path: str
    reason: str


@dataclass
class CommitReport:
    committed: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "committed": [c.as_dict() for c in self.committed],
            "conflicts": [asdict(c) for c in self.conflicts],
            "resumed": self.resumed,
        }


def _in_scope(action: Action | Change, scopes: list[str]) -> bool:
    if not scopes:
        return True
    paths = [action.group if isinstance(action, Action) else action.path]
    other = action.old_group if isinstance(action, Action) else action.old_path
    if other:
        paths.append(other)
    return any(related(p, s) for p in paths for s in scopes)


@contextlib.contextmanager
def exclusive(backend: HybridBackend) -> Iterator[None]:
    """One commit or discard at a time per lower tree, across processes."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=backend.lower.root_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _under(path: str, roots: set[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _changed_after(backend: HybridBackend, path: str, st: os.stat_result, since: int) -> bool:
    """Whether anything in the lower tree at ``path`` changed after ``since`` (ns)."""
    if st.st_ctime_ns > since or st.st_mtime_ns > since:
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False
    return any(
        _changed_after(backend, f"{path}/{name}" if path else name, child, since)
        for name, child in backend.lower.listdir(path)
    )


def _conflict(backend: HybridBackend, check: Check) -> str | None:
    st = backend.lower.lstat_or_none(check.path)
    if check.absent:
        return "created on disk since" if st is not None else None
    if st is None:
        return None if check.deleted else "deleted on disk since the overlay copied it"
    if check.digest and check.digest.startswith(TREE_STAMP_PREFIX):
        # The stamp taken when the overlay hid the directory: an exact answer,
        # where comparing file times with the replacement's birth is not (a tree
        # made on disk just before the overlay replaced it looks changed after).
        if not stat.S_ISDIR(st.st_mode) or tree_stamp(backend.lower, check.path) != check.digest:
            what = "replaced" if check.unchanged_since is not None else "deleted"
            return f"changed on disk since the overlay {what} it"
        return None
    if check.unchanged_since is not None and _changed_after(
        backend, check.path, st, check.unchanged_since
    ):
        return "changed on disk since the overlay replaced it"
    if check.size is None:
        return None
    if st.st_size == check.size and check.digest and stat.S_ISREG(st.st_mode):
        # Size and mtime can both be put back (``touch -d``); the hash cannot.
        with backend.lower.fd(check.path, os.O_RDONLY) as descriptor:
            if hash_fd(descriptor) == check.digest:
                return None  # unchanged, or touched only
    elif st.st_size == check.size and st.st_mtime_ns == check.mtime_ns and not check.digest:
        return None
    return "changed on disk since the overlay copied it"


def _conflicts(backend: HybridBackend, checks: list[Check], groups: set[str]) -> list[Conflict]:
    found = []
    for check in checks:
        if check.group in groups:
            reason = _conflict(backend, check)
            if reason is not None:
                found.append(Conflict(check.group, reason))
    return found


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path
    if path:
        yield ""


class _Readers:
    """Which change reads a lower path at, above or below a given one."""

    def __init__(self, reads: dict[str, set[str]], groups: Iterable[str]) -> None:
        self.at: dict[str, str] = {}
        self.above: dict[str, str] = {}  # a proper ancestor of a read path -> its reader
        for group in groups:
            for path in reads.get(group, ()):
                self.at[path] = group
                for ancestor in _ancestors(path):
                    self.above[ancestor] = group

    def of(self, written: str) -> tuple[str, str] | None:
        """(reader, path it reads) for a change that removes or writes ``written``."""
        for path in (written, *_ancestors(written)):
            if path in self.at:
                return self.at[path], path
        if written in self.above:
            return self.above[written], written
        return None


def _select(
    backend: HybridBackend, plan: Scan, scopes: list[str], force: bool
) -> tuple[set[str], list[Conflict]]:
    """The changes to commit for ``scopes``, and the conflicts that hold some back.

    A change whose commit removes or overwrites a lower path that another change
    still reads (the source of a move) takes that change along, or waits with
    it when it conflicts: the overlay view must not lose what it shows.
    """
    writes: dict[str, set[str]] = {}
    for action in plan.actions:
        if action.op in ("remove", "place", "mkdir"):
            writes.setdefault(action.group, set()).add(action.path)

    def hits(groups: set[str]) -> Iterator[tuple[str, str, str]]:
        """(writer in ``groups``, reader outside them, path) for every clash."""
        readers = _Readers(plan.reads, set(plan.reads) - groups)
        for group in sorted(groups):
            for path in writes.get(group, ()):
                hit = readers.of(path)
                if hit is not None:
                    yield group, *hit

    selected = {a.group for a in plan.actions if _in_scope(a, scopes)}
    while extra := {reader for _, reader, _ in hits(selected)}:
        selected |= extra
    found = [] if force else _conflicts(backend, plan.checks, selected)
    while True:
        blocked = {c.path for c in found}
        kept = {g for g in selected if not _under(g, blocked)}
        waiting = {
            group: Conflict(group, f"must be committed with {reader}, which reads {path}")
            for group, reader, path in hits(kept)
        }
        if not waiting:
            return kept, found
        found += waiting.values()


def conflicts(backend: HybridBackend, paths: list[str] | None = None) -> list[Conflict]:
    """The changes (at or under ``paths``) that a commit would refuse."""
    return _select(backend, scan(backend), [p.strip("/") for p in paths or []], False)[1]


def pending(backend: HybridBackend) -> bool:
    return backend.db.value("SELECT 1 FROM overlay_commit_ops LIMIT 1") is not None


def commit(
    backend: HybridBackend,
    paths: list[str] | None = None,
    *,
    force: bool = False,
    progress: Progress = no_progress,
) -> CommitReport:
    """Apply the overlay's changes (at or under ``paths``, default all) to the disk tree.

    A change whose disk file changed since the overlay first saw it is left in
    the overlay and reported in ``conflicts``, unless ``force``. ``progress``
    hears of each step applied to the disk (of all steps).
    """
    backend.check_writable()
    with exclusive(backend):
        return _commit(backend, paths, force, progress)


def _commit(
    backend: HybridBackend, paths: list[str] | None, force: bool, progress: Progress
) -> CommitReport:
    report = CommitReport(resumed=_resume(backend))
    scopes = [p.strip("/") for p in paths or []]
    plan = scan(backend)
    groups, report.conflicts = _select(backend, plan, scopes, force)
    actions = [a for a in plan.actions if a.group in groups]
    blocked = {c.path for c in report.conflicts}
    report.committed = [
        c
        for c in plan.changes
        if (_in_scope(c, scopes) or _under(c.path, groups)) and not _under(c.path, blocked)
    ]
    if not actions:
        return report
    order = sorted(range(len(actions)), key=lambda i: (actions[i].phase, i))
    place = staging.choose(backend)
    with backend.db.write():
        if pending(backend):
            raise OSError(errno.EBUSY, "another commit is under way")
        place.record(backend)
        backend.db.conn.executemany(
            f"INSERT INTO overlay_commit_ops ({', '.join(_COLUMNS)}) VALUES"
            f" ({', '.join('?' * len(_COLUMNS))})",
            [tuple(getattr(actions[i], c) for c in _COLUMNS) for i in order],
        )
    step()
    _run(backend, progress)
    return report


def resume(backend: HybridBackend) -> bool:
    """Finish a commit that was interrupted; True if there was one."""
    with exclusive(backend):
        return _resume(backend)


def _resume(backend: HybridBackend) -> bool:
    if not pending(backend):
        return False
    _run(backend)
    return True


def _run(backend: HybridBackend, progress: Progress = no_progress) -> None:
    place = staging.recorded(backend)
    assert place is not None  # called with a commit pending
    rows = backend.db.query(
        f"SELECT seq, {', '.join(_COLUMNS)} FROM overlay_commit_ops WHERE done = 0 ORDER BY seq"
    )
    disk = DiskSteps(backend, place)
    try:
        for done, row in enumerate(rows, 1):
            action = Action(**dict(zip(_COLUMNS, row[1:], strict=True)))
            if action.op in DATABASE_OPS:
                with backend.db.write():
                    _settle(backend, action)
                    _mark_done(backend, row[0])
            else:
                disk.run(action)
                _mark_done(backend, row[0])
            progress(done, len(rows))
            step()
    finally:
        disk.close()
    backend.db.execute("DELETE FROM overlay_commit_ops")
    place.remove(backend)


def _mark_done(backend: HybridBackend, seq: int) -> None:
    backend.db.execute("UPDATE overlay_commit_ops SET done = 1 WHERE seq = ?", (seq,))


def _settle(backend: HybridBackend, action: Action) -> None:
    """Forget a committed change: the disk now shows what the overlay held."""
    db = backend.db
    if action.op == "clear_whiteout":
        db.execute(
            "DELETE FROM overlay_whiteouts WHERE parent = ? AND name = ?",
            (action.parent, action.name),
        )
    elif action.op == "settle_dir":
        db.execute(
            "INSERT INTO overlay_nodes (ino, lower_path) VALUES (?, ?) ON CONFLICT (ino)"
            " DO UPDATE SET lower_path = excluded.lower_path, lower_limit = 0",
            (action.ino, action.path),
        )
    elif action.op == "clear_entry":
        row = db.one(
            "SELECT i.size, i.mtime_ns, i.ctime_ns FROM entries e JOIN inodes i ON i.ino = e.ino"
            " WHERE e.parent = ? AND e.name = ? AND e.ino = ?",
            (action.parent, action.name, action.ino),
        )
        if row is None or f"{row[0]}:{row[1]}:{row[2]}" != action.stamp:
            return  # written again while the commit ran: keep the newer change
        db.execute(
            "DELETE FROM entries WHERE parent = ? AND name = ?", (action.parent, action.name)
        )
        db.execute(
            "DELETE FROM overlay_whiteouts WHERE parent = ? AND name = ?",
            (action.parent, action.name),
        )
        backend.tables.drop_link(int(action.ino or 0), time.time_ns())


# -- discard -------------------------------------------------------------------


def discard(
    backend: HybridBackend, paths: list[str] | None = None, progress: Progress = no_progress
) -> int:
    """Drop the overlay's changes at or under ``paths`` (default: all); returns how many.

    Discarding everything also drops an interrupted commit's journal; discarding
    some paths while one is pending is refused, as its plan may still need them.
    """
    backend.check_writable()
    with exclusive(backend):
        return _discard(backend, paths, progress)


def _discard(backend: HybridBackend, paths: list[str] | None, progress: Progress) -> int:
    changes = [
        c for c in scan(backend).changes if _in_scope(c, [p.strip("/") for p in paths or []])
    ]
    db = backend.db
    place = staging.recorded(backend)
    with db.write():
        if paths and pending(backend):
            raise OSError(
                errno.EBUSY,
                "an interrupted commit is pending: run `vfs commit` to finish it,"
                " or discard all changes",
            )
        if not paths:
            db.execute("DELETE FROM overlay_commit_ops")
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM overlay_whiteouts")
            db.execute("UPDATE overlay_nodes SET lower_path = '' WHERE ino = ?", (ROOT_INO,))
        else:
            for done, path in enumerate(paths, 1):
                _discard_path(backend, path.strip("/"))
                progress(done, len(paths))
        _collect(backend)
    if not paths and place is not None:
        place.remove(backend)
    return len(changes)


def _discard_path(backend: HybridBackend, path: str) -> None:
    db = backend.db
    parent, name = backend.resolve_parent(path)
    row = db.one(
        "SELECT e.ino, n.lower_path FROM entries e LEFT JOIN overlay_nodes n ON n.ino = e.ino"
        " WHERE e.parent = ? AND e.name = ?",
        (parent, name),
    )
    db.execute("DELETE FROM overlay_whiteouts WHERE parent = ? AND name = ?", (parent, name))
    if row is None:
        return
    ino, lower_path = row
    if lower_path is not None:  # a moved lower object shows at its old place again
        head, _, tail = lower_path.rpartition("/")
        # ... unless a new object took that name: its whiteout still hides the old one
        db.execute(
            "DELETE FROM overlay_whiteouts WHERE name = ? AND parent IN"
            " (SELECT ino FROM overlay_nodes WHERE lower_path = ?) AND NOT EXISTS"
            " (SELECT 1 FROM entries e WHERE e.parent = overlay_whiteouts.parent"
            " AND e.name = overlay_whiteouts.name)",
            (tail, head),
        )
    db.execute(
        "WITH RECURSIVE tree(ino) AS (SELECT ? UNION SELECT e.ino FROM entries e"
        " JOIN tree t ON e.parent = t.ino) DELETE FROM entries WHERE parent IN tree",
        (ino,),
    )
    db.execute("DELETE FROM entries WHERE parent = ? AND name = ?", (parent, name))


def _collect(backend: HybridBackend) -> None:
    """Free upper inodes that lost their last name (open ones wait for their close)."""
    db = backend.db
    db.execute(
        "UPDATE inodes SET nlink = 0 WHERE ino IN (SELECT ino FROM orphans)"
        " AND ino NOT IN (SELECT ino FROM entries)"
    )
    db.execute(
        "DELETE FROM inodes WHERE ino != ? AND ino NOT IN (SELECT ino FROM entries)"
        " AND ino NOT IN (SELECT ino FROM orphans)",
        (ROOT_INO,),
    )
