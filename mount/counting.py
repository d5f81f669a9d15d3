"""Counts of kernel requests by type, for the mount benchmark.

Set :data:`COUNT_ENV` to a file path in the mount process's environment: the
handlers count every request, and :func:`dump` (at unmount, and on SIGUSR1)
writes the counts there as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter

COUNT_ENV = "AGENTVFS_MOUNT_COUNTS"

#: None unless counting was asked for, so a normal mount pays one test per request.
counts: Counter[str] | None = Counter() if os.environ.get(COUNT_ENV) else None


def dump() -> None:
    """Write the counts so far to the file named by :data:`COUNT_ENV`."""
    path = os.environ.get(COUNT_ENV)
    if counts is not None and path:
        with open(f"{path}.tmp", "w") as out:
            json.dump(dict(counts), out)
        os.replace(f"{path}.tmp", path)
