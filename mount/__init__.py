"""Mounts of an agent's workspace: FUSE (pyfuse3 + trio) over the Backend interface,
or, for a disk-mode workspace, a kernel bind mount of its directory.

``serve`` mounts through FUSE in the calling process and blocks; ``start`` /
``mounted`` mount in the background (a bind mount, or a FUSE server process);
``unmount`` and ``stop`` end one. The FUSE names are imported on first use, so
that bind mounts work without the ``fuse`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vfs.mount.operations import DEFAULT_CACHE_TIMEOUT, AgentOperations
    from vfs.mount.process import Mount, mounted, start, stop, unmount
    from vfs.mount.session import serve

# public name -> the module that defines it
_HOMES = {
    "DEFAULT_CACHE_TIMEOUT": "vfs.mount.operations",
    "AgentOperations": "vfs.mount.operations",
    "Mount": "vfs.mount.process",
    "mounted": "vfs.mount.process",
    "start": "vfs.mount.process",
    "stop": "vfs.mount.process",
    "unmount": "vfs.mount.process",
    "serve": "vfs.mount.session",
}

__all__ = [
    "DEFAULT_CACHE_TIMEOUT",
    "AgentOperations",
    "Mount",
    "mounted",
    "serve",
    "start",
    "stop",
    "unmount",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
