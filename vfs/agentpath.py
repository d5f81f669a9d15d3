"""``AgentPath``: universal_pathlib's path class for ``agentvfs://`` URLs.

Registered through the ``universal_pathlib.implementations`` entry point, so
``UPath("agentvfs://alice/notes")`` is an ``AgentPath`` without a warning that the
protocol has no class of its own. Everything it does comes from ``UPath`` over
:class:`vfs.fs.AgentFileSystem`, whose ``_strip_protocol`` keeps the agent in
the path: ``str()`` gives the URL back. Importing it needs universal_pathlib.
"""

from __future__ import annotations

import fsspec
from upath import UPath

# universal_pathlib reads the path rules (_strip_protocol, _parent) from the
# filesystem class fsspec has loaded; load it before the first path is parsed.
fsspec.get_filesystem_class("agentvfs")


class AgentPath(UPath):
    __slots__ = ()
