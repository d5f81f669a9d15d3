"""The FUSE request handlers: one async method per kernel operation, over a Backend.

Every handler runs its backend call inline on the trio loop: the calls are short
(one indexed query or one small transaction), and a hop to a worker thread
would cost more than most of them take. Errors become ``FUSEError`` in one
place, :func:`kernel_op`.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import time
from collections.abc import Iterable, Sequence

import pyfuse3

from vfs.backends.base import REOPEN_ATTEMPTS, Attr, Backend, Handle
from vfs.backends.journal import Change
from vfs.backends.names import NAME_MAX
from vfs.mount import counting
from vfs.mount.kernel import decode_name, entry_attributes, kernel_op, stale_if_gone

log = logging.getLogger("agentvfs.mount")

#: Default seconds the kernel may trust a name lookup or an inode's attributes
#: without asking again where nothing tells the mount about changes made by
#: other processes (disk mode): the staleness bound there.
DEFAULT_CACHE_TIMEOUT = 1.0

#: The same where the change journal tells the mount what other processes
#: changed (sqlite and hybrid mode): the mount invalidates exactly those
#: entries and inodes, so the kernel may keep the rest for long.
JOURNALED_CACHE_TIMEOUT = 3600.0

#: Asked by the kernel before every write (to drop file capabilities).
CAPABILITY_XATTR = b"security.capability"

#: Pins of forgotten inodes closed together at most: the rest wait for the
#: next :meth:`AgentOperations.release_forgotten` (about every 50 ms).
FORGOTTEN_BATCH = 256


class AgentOperations(pyfuse3.Operations):
    """pyfuse3 operations serving one agent's :class:`~vfs.backends.base.Backend`.

    Parameters
    ----------
    backend:
        The workspace to serve; the mount owns it from here on.
    cache_timeout:
        Seconds the kernel may cache entries, negative lookups and attributes.
    created_timeout:
        The same for the names and attributes of inodes this mount created,
        where only journaled writers can change them although other things
        may change unjournaled (hybrid mode's disk tree); default
        ``cache_timeout``.
    """

    # With a writeback cache the kernel keeps its own size and mtime of a
    # regular file and ignores the backend's for good (even after an
    # invalidation), so a file grown by another process would keep its old
    # size: the page cache is used write-through instead.
    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(
        self,
        backend: Backend,
        *,
        cache_timeout: float = DEFAULT_CACHE_TIMEOUT,
        journaled: bool = False,
        created_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.cache_timeout = cache_timeout
        self.created_timeout = cache_timeout if created_timeout is None else created_timeout
        # Inodes this mount created and nobody else has changed since: in
        # hybrid mode they live only in the database (no disk tree below
        # them), so their names and attributes may be cached for long.
        self._created: set[int] = set()
        # Only a journal reports extended attributes set by other processes
        # (setcap), so only then may "none" be remembered.
        self.journaled = journaled
        # parent -> names the kernel may cache (found or missing) under it: what
        # to invalidate when the follower can no longer say what changed.
        self._cached_names: dict[int, set[bytes]] = {}
        # Inodes known to have no security.capability xattr: the kernel asks
        # before every write, and a file this mount just created has none.
        self._no_caps: set[int] = set()
        self._files: dict[int, Handle] = {}
        self._next_fh = itertools.count(1)
        self._lookups: dict[int, int] = {}
        # ino -> (parent, name) it was last looked up by, for regular files.
        self._names: dict[int, tuple[int, str]] = {}
        # ino -> the size the kernel has for it: what it was last told, or
        # what its own writes through the mount made it.
        self._sizes: dict[int, int] = {}
        # Files whose last name went away while the kernel still knew them: an
        # open handle keeps each alive (a later open or stat by inode works, as
        # on a local filesystem) until the kernel forgets the inode.
        self._pins: dict[int, Handle] = {}
        # Pins of inodes the kernel has forgotten, closed together by
        # release_forgotten(): each close frees its inode, and freeing them one
        # forget at a time cost a commit per unlinked file.
        self._forgotten: list[Handle] = []
        # ino -> (mtime_ns, size) when last opened and not written through the
        # mount since: while it is unchanged, the kernel's cached pages are good.
        self._clean: dict[int, tuple[int, int]] = {}

    # -- helpers -------------------------------------------------------------

    def _entry(self, attr: Attr) -> pyfuse3.EntryAttributes:
        timeout = self.created_timeout if attr.ino in self._created else self.cache_timeout
        self._sizes[attr.ino] = attr.size
        return entry_attributes(attr, timeout)

    def _looked_up(self, attr: Attr, parent: int, name: bytes) -> pyfuse3.EntryAttributes:
        """An entry reply: the kernel now holds one more reference to the inode."""
        self._lookups[attr.ino] = self._lookups.get(attr.ino, 0) + 1
        self._cached_names.setdefault(parent, set()).add(name)
        if attr.is_file:
            self._names[attr.ino] = (parent, decode_name(name))
        return self._entry(attr)

    def _new_file(self, attr: Attr, parent: int, name: bytes) -> pyfuse3.EntryAttributes:
        if self.journaled:
            self._no_caps.add(attr.ino)
            self._created.add(attr.ino)
        return self._looked_up(attr, parent, name)

    def changed_elsewhere(
        self, changes: Iterable[Change]
    ) -> tuple[list[tuple[int, bytes]], list[int]]:
        """The entries and inodes the kernel may cache that ``changes`` (made by
        other processes) made stale; forgets what the mount itself cached of them."""
        entries: dict[tuple[int, bytes], None] = {}
        inodes: dict[int, None] = {}
        for change in changes:
            inodes[change.ino] = None
            if change.parent is not None and change.name is not None:
                entries[(change.parent, change.name.encode("utf-8", "surrogateescape"))] = None
                inodes[change.parent] = None  # its listing, mtime and link count
        for ino in inodes:
            self._clean.pop(ino, None)
            self._no_caps.discard(ino)
            self._created.discard(ino)  # perhaps freed, and the number reused
        known = self._lookups
        return (
            [e for e in entries if e[0] == pyfuse3.ROOT_INODE or e[0] in known],
            [i for i in inodes if i == pyfuse3.ROOT_INODE or i in known],
        )

    def handed_out(self) -> tuple[list[tuple[int, bytes]], list[int]]:
        """Every entry and inode the kernel may cache (when what changed is unknown)."""
        self._clean.clear()
        self._no_caps.clear()
        self._created.clear()
        entries = [(parent, name) for parent, names in self._cached_names.items() for name in names]
        return entries, [pyfuse3.ROOT_INODE, *self._lookups]

    def _replacement(self, ino: int) -> Attr:
        """The file that now has the name by which the kernel found ``ino``, which
        another process replaced (or removed) while the kernel still caches it.

        On a local filesystem a program opening or stating the name gets the
        new file; the kernel asks for the cached inode instead, so the name
        answers for it. ESTALE (the kernel looks the path up again) when the
        name holds no regular file now.
        """
        named = self._names.get(ino)
        attr = None if named is None else self.backend.lookup_or_none(*named)
        if attr is None or not attr.is_file:
            raise OSError(errno.ESTALE, "inode no longer exists")
        return attr

    def _open_replacement(self, ino: int, flags: int) -> Handle:
        for attempt in range(REOPEN_ATTEMPTS):
            try:
                return self.backend.open(self._replacement(ino).ino, flags)
            except FileNotFoundError:
                # The name may still show a file whose replacement is committing.
                time.sleep(min(0.0005 * attempt, 0.01))
        raise OSError(errno.ESTALE, "inode no longer exists")

    def _handle(self, fh: int) -> Handle:
        try:
            return self._files[fh]
        except KeyError:
            raise OSError(errno.EBADF, "unknown file handle") from None

    def _open_file(self, handle: Handle, stamp: tuple[int, int] | None) -> int:
        fh = next(self._next_fh)
        self._files[fh] = handle
        if stamp is not None:
            self._clean[handle.ino] = stamp
        return fh

    def _pin_last_name(self, parent: int, name: str) -> Handle | None:
        """Keep the file ``parent/name`` alive if removing the name would free it."""
        attr = self.backend.lookup_or_none(parent, name)
        if (
            attr is None
            or not attr.is_file
            or attr.nlink != 1
            or attr.ino in self._pins
            or not self._lookups.get(attr.ino)
        ):
            return None
        pin = self.backend.open(attr.ino, os.O_RDONLY)
        self._pins[attr.ino] = pin
        return pin

    def _unpin(self, pin: Handle | None) -> None:
        if pin is not None and self._pins.get(pin.ino) is pin:
            del self._pins[pin.ino]
            pin.close()

    def release_forgotten(self) -> None:
        """Close the pins of inodes the kernel forgot, in one transaction."""
        pins, self._forgotten = self._forgotten, []
        if not pins:
            return
        try:
            with self.backend.transaction():
                for pin in pins:
                    pin.close()
        except Exception:
            # Whatever stayed unfreed is an orphan the next mount reclaims.
            log.exception("freeing %d forgotten inodes failed", len(pins))

    def close_all(self) -> None:
        """Flush and close every file still open (at unmount or shutdown)."""
        counting.dump()
        self.release_forgotten()
        pinned = list(self._pins.items())
        self._pins.clear()
        while self._files or pinned:
            _, handle = self._files.popitem() if self._files else pinned.pop()
            try:
                handle.close()
            except Exception:
                log.exception("closing inode %d at unmount failed", handle.ino)

    # -- names and inodes ----------------------------------------------------

    @kernel_op
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if len(name) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, "File name too long")
        text = decode_name(name)
        try:
            attr = self.backend.lookup(parent_inode, text)
        except FileNotFoundError:
            # st_ino 0 lets the kernel cache the miss for the cache timeout.
            miss = pyfuse3.EntryAttributes()
            miss.st_ino = 0
            miss.entry_timeout = self.cache_timeout
            self._cached_names.setdefault(parent_inode, set()).add(name)
            return miss
        return self._looked_up(attr, parent_inode, name)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        if counting.counts is not None:
            counting.counts["forget"] += 1
        for ino, count in inode_list:
            left = self._lookups.get(ino, 0) - count
            if left > 0:
                self._lookups[ino] = left
                continue
            self._lookups.pop(ino, None)
            self._names.pop(ino, None)
            self._clean.pop(ino, None)
            self._sizes.pop(ino, None)
            self._cached_names.pop(ino, None)
            self._no_caps.discard(ino)
            self._created.discard(ino)
            pin = self._pins.pop(ino, None)
            if pin is not None:
                self._forgotten.append(pin)
            try:
                self.backend.forget(ino)
            except Exception:  # forget has nobody to answer
                log.exception("forget of inode %d failed", ino)
        if len(self._forgotten) >= FORGOTTEN_BATCH:
            self.release_forgotten()

    @kernel_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(self.backend.getattr(inode))
        except FileNotFoundError:
            return self._entry(self._replacement(inode))

    @kernel_op
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        changes: dict[str, int | None] = {}
        if fields.update_mode:
            changes["mode"] = attr.st_mode
        if fields.update_uid:
            changes["uid"] = attr.st_uid
        if fields.update_gid:
            changes["gid"] = attr.st_gid
        if fields.update_size:
            changes["size"] = attr.st_size
            self._clean.pop(inode, None)
        if fields.update_atime:
            changes["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            changes["mtime_ns"] = attr.st_mtime_ns
        if fields.update_ctime:
            changes["ctime_ns"] = attr.st_ctime_ns
        if fh is not None and fh in self._files:
            inode = self._files[fh].ino  # the file this open reached (see open)
        try:
            return self._entry(self.backend.setattr(inode, **changes))
        except FileNotFoundError:
            return self._entry(self.backend.setattr(self._replacement(inode).ino, **changes))

    @kernel_op
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self.backend.readlink(inode)

    @kernel_op
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = decode_name(name)
        if stat.S_ISREG(mode):
            handle, attr = self.backend.create(parent_inode, text, mode, ctx.uid, ctx.gid)
            handle.close()
        else:
            # A FIFO, socket or device: the kernel serves its I/O and never
            # sends an open for it here (and the mount is nodev).
            attr = self.backend.mknod(parent_inode, text, mode, rdev, ctx.uid, ctx.gid)
        return self._new_file(attr, parent_inode, name)

    @kernel_op
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        attr = self.backend.mkdir(parent_inode, decode_name(name), mode, ctx.uid, ctx.gid)
        return self._new_file(attr, parent_inode, name)

    @kernel_op
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        text = decode_name(name)
        pin = self._pin_last_name(parent_inode, text)
        try:
            self.backend.unlink(parent_inode, text)
        except BaseException:
            self._unpin(pin)
            raise

    @kernel_op
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.backend.rmdir(parent_inode, decode_name(name))

    @kernel_op
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        attr = self.backend.symlink(parent_inode, decode_name(name), target, ctx.uid, ctx.gid)
        return self._new_file(attr, parent_inode, name)

    @kernel_op
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        old, new = decode_name(name_old), decode_name(name_new)
        replaced = flags & pyfuse3.RENAME_EXCHANGE == 0
        pin = self._pin_last_name(parent_inode_new, new) if replaced else None
        try:
            self.backend.rename(parent_inode_old, old, parent_inode_new, new, flags)
        except BaseException:
            self._unpin(pin)
            raise

    @kernel_op
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        attr = self.backend.link(inode, new_parent_inode, decode_name(new_name))
        return self._looked_up(attr, new_parent_inode, new_name)

    # -- files ---------------------------------------------------------------

    @kernel_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        try:
            handle = self.backend.open(inode, flags)
        except FileNotFoundError:
            # Replaced since the kernel looked it up: open what the name holds
            # now, past the kernel's cached pages and size, which are the old file's.
            handle = self._open_replacement(inode, flags)
            fh = self._open_file(handle, None)
            return pyfuse3.FileInfo(fh=fh, keep_cache=False, direct_io=True)
        try:
            attr = handle.getattr()  # the opened file's, with any truncation applied
        except BaseException:
            handle.close()
            raise
        stamp = (attr.mtime_ns, attr.size)
        keep_cache = not flags & os.O_TRUNC and self._clean.get(inode) == stamp
        # Larger than the kernel believes (another process grew or replaced it;
        # a disk file may even reuse a replaced file's inode number): the kernel
        # would cut reads at its cached size, so this open bypasses its cache.
        grown = attr.size > self._sizes.get(inode, attr.size)
        if flags & os.O_TRUNC:
            self._sizes[inode] = attr.size
        fh = self._open_file(handle, None if flags & os.O_TRUNC or grown else stamp)
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache and not grown, direct_io=grown)

    @kernel_op
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        text = decode_name(name)
        handle, attr = self.backend.create(parent_inode, text, mode, ctx.uid, ctx.gid)
        fh = self._open_file(handle, None)
        entry = self._new_file(attr, parent_inode, name)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False, direct_io=False), entry

    @kernel_op
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self._handle(fh).read(off, size)

    @kernel_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        self._clean.pop(handle.ino, None)
        written = handle.write(off, buf)
        self._sizes[handle.ino] = max(self._sizes.get(handle.ino, 0), off + written)
        return written

    @kernel_op
    async def flush(self, fh: int) -> None:
        self._handle(fh).flush()

    @kernel_op
    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            handle.close()

    @kernel_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        self._handle(fh).fsync(datasync)

    # -- directories ---------------------------------------------------------

    @kernel_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        with stale_if_gone():
            attr = self.backend.getattr(inode)
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
        return inode  # readdir offsets are the backend's; no per-open state needed

    @kernel_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for name, attr, offset in self.backend.readdir(fh, start_id):
            try:
                encoded = name.encode("utf-8")
            except UnicodeEncodeError:
                # A disk tree may hold names that are not UTF-8; they cannot be
                # looked up through the workspace, so they are not listed.
                log.warning("skipping a name that is not UTF-8 in inode %d: %r", fh, name)
                continue
            if not pyfuse3.readdir_reply(token, encoded, self._entry(attr), offset):
                return
            self._lookups[attr.ino] = self._lookups.get(attr.ino, 0) + 1
            self._cached_names.setdefault(fh, set()).add(encoded)
            if attr.is_file:
                self._names[attr.ino] = (fh, name)

    @kernel_op
    async def releasedir(self, fh: int) -> None:
        return None

    @kernel_op
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # directory changes are committed when they are made

    @kernel_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        fs = self.backend.statfs()
        data = pyfuse3.StatvfsData()
        data.f_bsize = fs.block_size
        data.f_frsize = fs.block_size
        data.f_blocks = fs.blocks
        data.f_bfree = fs.blocks_free
        data.f_bavail = fs.blocks_available
        data.f_files = fs.files
        data.f_ffree = fs.files_free
        data.f_favail = fs.files_free
        data.f_namemax = fs.name_max
        return data

    # -- extended attributes -------------------------------------------------

    @kernel_op
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        self._no_caps.discard(inode)
        self.backend.setxattr(inode, name, value)

    @kernel_op
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name != CAPABILITY_XATTR:
            return self.backend.getxattr(inode, name)
        if inode in self._no_caps:
            raise pyfuse3.FUSEError(errno.ENODATA)  # before every write: the cheapest answer
        try:
            return self.backend.getxattr(inode, name)
        except OSError as exc:
            if exc.errno == errno.ENODATA and self.journaled:
                self._no_caps.add(inode)
            raise

    @kernel_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return self.backend.listxattr(inode)

    @kernel_op
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._no_caps.discard(inode)
        self.backend.removexattr(inode, name)
