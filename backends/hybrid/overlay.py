"""A hybrid workspace's changes as one object: what changed, commit, discard."""

from __future__ import annotations

import stat

from vfs.backends.hybrid import commit as commits
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.diff import Change, scan
from vfs.backends.progress import Progress, no_progress


class Overlay:
    """The changes a hybrid overlay holds against its disk tree.

    ``Workspace.overlay`` hands one out for an agent in hybrid mode.
    """

    def __init__(self, backend: HybridBackend) -> None:
        self.backend = backend

    def diff(self) -> list[Change]:
        """Every changed path, as ``added``/``modified``/``deleted``/``renamed``."""
        return scan(self.backend).changes

    def commit(
        self,
        paths: list[str] | None = None,
        *,
        force: bool = False,
        progress: Progress = no_progress,
    ) -> commits.CommitReport:
        """Apply the changes at or under ``paths`` (default: all) to the disk tree.

        A change whose disk file changed since the overlay first saw it stays in
        the overlay and is listed in the report's ``conflicts``, unless ``force``.
        An interrupted commit is finished first. ``progress(done, total)`` hears
        of each step applied to the disk. ``OSError(EROFS)`` on a read-only
        workspace.
        """
        return commits.commit(self.backend, paths, force=force, progress=progress)

    def discard(self, paths: list[str] | None = None, *, progress: Progress = no_progress) -> int:
        """Drop the changes at or under ``paths`` (default: all); returns how many."""
        return commits.discard(self.backend, paths, progress)

    def conflicts(self, paths: list[str] | None = None) -> list[commits.Conflict]:
        """The changes (at or under ``paths``) a commit would refuse."""
        return commits.conflicts(self.backend, paths)

    def disk_bytes(self, path: str, limit: int) -> bytes | None:
        """The content of the disk file at ``path`` as the commit would replace it;
        None when it is not a regular file or is larger than ``limit`` bytes."""
        st = self.backend.lower.lstat_or_none(path)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return self.backend.lower.pread(path, 0, st.st_size)

    def overlay_bytes(self, path: str, limit: int) -> bytes | None:
        """The content the overlay shows at ``path``; None when larger than ``limit``."""
        attr = self.backend.resolve(path)
        if attr.size > limit:
            return None
        return self.backend.read(attr.ino, 0, attr.size)
