"""Consistency checks of the overlay's own tables, for ``vfs doctor``: whiteouts
that hide nothing, and operations a crash interrupted."""

from __future__ import annotations

from vfs.backends.db import Database
from vfs.backends.hybrid.lower import LowerTree
from vfs.backends.sqlite.check import Finding


class OverlayCheck:
    def __init__(self, db: Database, lower: LowerTree) -> None:
        self.db = db
        self.lower = lower

    def stale_whiteouts(self) -> list[tuple[int, str]]:
        """``(parent, name)`` of whiteouts over a lower entry that is not there."""
        stale = []
        for parent, name, lower_dir in self.db.query(
            "SELECT w.parent, w.name, n.lower_path FROM overlay_whiteouts w"
            " LEFT JOIN overlay_nodes n ON n.ino = w.parent"
        ):
            path = name if not lower_dir else f"{lower_dir}/{name}"
            if lower_dir is None or self.lower.lstat_or_none(path) is None:
                stale.append((int(parent), str(name)))
        return stale

    def interrupted_commit(self) -> int:
        """Steps of a commit that a crash left unfinished."""
        return int(self.db.value("SELECT count(*) FROM overlay_commit_ops WHERE done = 0"))

    def findings(self) -> list[Finding]:
        found = [
            Finding("whiteout over nothing", f"{name!r} in directory #{parent}", True)
            for parent, name in self.stale_whiteouts()
        ]
        pending = self.interrupted_commit()
        if pending:
            found.append(
                Finding(
                    "interrupted commit",
                    f"{pending} steps left: `vfs commit` finishes it, `vfs discard` drops it",
                    False,
                )
            )
        return found

    def repair(self) -> list[str]:
        done = []
        with self.db.write():
            for parent, name in self.stale_whiteouts():
                self.db.execute(
                    "DELETE FROM overlay_whiteouts WHERE parent = ? AND name = ?", (parent, name)
                )
                done.append(f"removed the whiteout of {name!r}, which hid nothing")
        return done
