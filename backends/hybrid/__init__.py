"""hybrid mode: a copy-on-write overlay of a disk tree, changes in the agent database.

``backend`` is the overlay itself; ``lower`` reads the disk tree; ``nodes``
numbers lower objects and describes upper files' layouts; ``diff``, ``commit``
and ``tree_copy`` compare, apply and move the overlay's changes.
"""

from __future__ import annotations

from vfs.backends.hybrid.backend import HybridBackend

__all__ = ["HybridBackend"]
