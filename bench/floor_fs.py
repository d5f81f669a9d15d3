"""The floor: a pyfuse3 filesystem that answers lookup and getattr from memory.

Usage: ``python bench/floor_fs.py MOUNTPOINT FILES COUNTS_JSON``

One flat directory of ``FILES`` empty files, nothing cached by the kernel
(zero timeouts), so every ``stat`` is a request. It prints ``ready`` once
mounted and writes its request counts to ``COUNTS_JSON`` when unmounted. What a
request costs here is the round trip through the kernel and pyfuse3's loop
with no work at all: no handler of a pyfuse3 filesystem can answer faster.
"""

from __future__ import annotations

import errno
import json
import stat
import sys
from collections import Counter

import pyfuse3
import trio

counts: Counter[str] = Counter()


class Floor(pyfuse3.Operations):
    def __init__(self, files: int) -> None:
        super().__init__()
        self.inodes = {f"f{i:05d}".encode(): pyfuse3.ROOT_INODE + 1 + i for i in range(files)}

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = ino
        entry.st_mode = (
            (stat.S_IFDIR | 0o755) if ino == pyfuse3.ROOT_INODE else stat.S_IFREG | 0o644
        )
        entry.st_nlink = 1
        entry.entry_timeout = 0
        entry.attr_timeout = 0
        return entry

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        counts["lookup"] += 1
        ino = self.inodes.get(name)
        if parent_inode != pyfuse3.ROOT_INODE or ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(ino)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        counts["getattr"] += 1
        return self._attr(inode)


def main() -> None:
    where, files, counts_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pyfuse3.init(Floor(files), where, {"fsname=floor", "subtype=floor"})
    print("ready", flush=True)
    try:
        trio.run(pyfuse3.main, 1, 1)
    finally:
        pyfuse3.close(unmount=True)
        with open(counts_path, "w") as out:
            json.dump(dict(counts), out)


if __name__ == "__main__":
    main()
