"""hybrid mode: a copy-on-write overlay of a disk tree, changes in the agent database.

``backend`` is the overlay itself; ``lower`` reads the disk tree; ``upper`` is
the sqlite file tables whose files read unchanged chunks from the lower tree;
``nodes`` numbers lower objects; ``handles`` are open files; ``diff``,
``commit`` (with ``commit_steps``) and ``tree_copy`` compare, apply and move the
overlay's changes; ``overlay`` is what ``Workspace.overlay`` hands out.
"""

from __future__ import annotations

from vfs.backends.hybrid.backend import HybridBackend

__all__ = ["HybridBackend"]
