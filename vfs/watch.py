"""Watching a workspace: change events from any writer, within 100 ms.

In sqlite and hybrid mode the events come from the agent database's change
journal (:mod:`vfs.backends.journal`), so they carry the writer (the mount,
fsspec, the CLI, another process) and miss nothing, however fast the writes.
Hybrid mode reports the overlay's changes: edits made on disk below it are
not journaled. In disk mode, where the files are a real directory that any
program may change, the tree is scanned at every poll instead and compared
with the previous scan.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vfs.backends.db import Database
from vfs.backends.journal import Change, Journal

POLL_S = 0.05  # half the promised bound: a change shows within 100 ms


@dataclass(frozen=True)
class Event:
    kind: str  # created, modified, deleted, moved
    path: str
    old_path: str | None = None  # moved: where it was
    writer: str | None = None
    at_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _under(path: str | None, prefix: str) -> bool:
    return path is not None and (prefix == "/" or path == prefix or path.startswith(prefix + "/"))


class _JournalSource:
    def __init__(self, db: Database) -> None:
        self.journal = Journal(db)
        self.follower = self.journal.follower(f"watch:{os.getpid()}:{id(self)}")

    def _entry_path(self, parent: int | None, name: str | None) -> str | None:
        if parent is None or name is None:
            return None
        base = self.journal.path_of(parent)
        return None if base is None else f"{base.rstrip('/')}/{name}"

    def events(self) -> list[Event]:
        changes = self.follower.poll()
        out: list[Event] = []
        unlinked: dict[tuple[int | None, str | None], Change] = {}
        # A file written before it got its name (a whole-file replace) is
        # reported by its naming, not by the writes that came first.
        modified: set[int] = {c.ino for c in changes if c.what == "link"}
        for change in changes:
            if change.what == "unlink":
                unlinked[(change.parent, change.name)] = change
            elif change.what == "link":
                path = self._entry_path(change.parent, change.name)
                moved_from = next(
                    (
                        c
                        for c in unlinked.values()
                        if c.ino == change.ino and c.seq == change.seq - 1
                    ),
                    None,
                )
                before = unlinked.pop((change.parent, change.name), None)
                if moved_from is not None:  # a rename, over ``before`` if there was one
                    unlinked.pop((moved_from.parent, moved_from.name))
                    old = self._entry_path(moved_from.parent, moved_from.name)
                    out.append(Event("moved", path or "", old, change.writer, change.at_ns))
                elif before is not None:  # the name now holds another object: replaced
                    out.append(Event("modified", path or "", None, change.writer, change.at_ns))
                else:
                    out.append(Event("created", path or "", None, change.writer, change.at_ns))
            elif change.what == "attr" and change.ino not in modified:
                if self.journal.is_dir(change.ino):
                    continue  # a directory's times move with every entry in it
                path = self.journal.path_of(change.ino)
                if path is not None:
                    out.append(Event("modified", path, None, change.writer, change.at_ns))
                    modified.add(change.ino)
        for change in unlinked.values():
            path = self._entry_path(change.parent, change.name)
            out.append(
                Event("deleted", path or f"#{change.ino}", None, change.writer, change.at_ns)
            )
        return out

    def close(self) -> None:
        self.follower.close()


class _ScanSource:
    """Disk mode: compare scans of the real directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen = self._scan()

    def _scan(self) -> dict[str, tuple[int, int, int, bool]]:
        found: dict[str, tuple[int, int, int, bool]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                if name.startswith(".agentvfs-tmp-"):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                path = "/" + os.path.relpath(full, self.root)
                found[path] = (st.st_ino, st.st_size, st.st_mtime_ns, stat.S_ISDIR(st.st_mode))
        return found

    def events(self) -> list[Event]:
        now, before = self._scan(), self.seen
        self.seen = now
        stamp = time.time_ns()
        gone = {p: v for p, v in before.items() if p not in now}
        out = []
        for path, value in now.items():
            old = before.get(path)
            if old is None:
                origin = next((p for p, v in gone.items() if v[0] == value[0]), None)
                if origin is not None:
                    del gone[origin]
                    out.append(Event("moved", path, origin, None, stamp))
                else:
                    out.append(Event("created", path, None, None, stamp))
            elif old != value and not value[3]:
                out.append(Event("modified", path, None, None, stamp))
        out += [Event("deleted", path, None, None, stamp) for path in gone]
        return out

    def close(self) -> None:
        pass


class Watcher:
    """Change events under ``path`` of a workspace: iterate (blocking), ``async
    for``, or call :meth:`poll` for what happened since the last call.
    ``Workspace.watch`` makes one."""

    def __init__(
        self, db: Database, mode: str, root: Path, path: str = "/", interval: float = POLL_S
    ) -> None:
        self.prefix = "/" + path.strip("/") if path.strip("/") else "/"
        self.interval = interval
        self.source: _ScanSource | _JournalSource = (
            _ScanSource(root) if mode == "disk" else _JournalSource(db)
        )

    def poll(self) -> list[Event]:
        return [
            e for e in self.source.events()
            if _under(e.path, self.prefix) or _under(e.old_path, self.prefix)
        ]  # fmt: skip

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield from self.poll()
            time.sleep(self.interval)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            for event in await asyncio.to_thread(self.poll):
                yield event
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
