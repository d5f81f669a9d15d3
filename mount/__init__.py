"""The FUSE mount of an agent's workspace (pyfuse3 + trio), over the Backend interface.

``serve`` mounts in the calling process and blocks; ``start`` / ``mounted``
run the mount in a background process; ``unmount`` ends one.
"""

from __future__ import annotations

from vfs.mount.operations import DEFAULT_CACHE_TIMEOUT, AgentOperations
from vfs.mount.process import mounted, start, stop, unmount
from vfs.mount.session import serve

__all__ = [
    "DEFAULT_CACHE_TIMEOUT",
    "AgentOperations",
    "mounted",
    "serve",
    "start",
    "stop",
    "unmount",
]
