"""The one interface every storage engine implements.

It is inode-based, like the FUSE low-level API, because that is the strictest
of the three front ends: the FUSE adapter calls it as it is, and the fsspec
filesystem and the CLI reach inodes through :meth:`Backend.resolve`.

Errors are built-in ``OSError`` subclasses with an errno. Every method that
changes something raises ``OSError(EROFS)`` on a backend opened read-only;
an inode number that names nothing (any more) raises ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from vfs.backends.chunks import SharedChunks
from vfs.backends.names import check_name, split_path

ROOT_INO = 1
SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS
# How often a name is looked up again when its file was replaced before it
# could be opened; each retry means another replacement landed meanwhile.
REOPEN_ATTEMPTS = 64

# open() flags that make a handle change the file: a read-only backend refuses them.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND

#: The file types :meth:`Backend.mknod` makes: the kernel serves their I/O, never an engine.
SPECIAL_TYPES = (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK)


def special_mode(mode: int, rdev: int) -> tuple[int, int]:
    """``(mode, rdev)`` as :meth:`Backend.mknod` stores them: the type and the
    permission bits of ``mode``, and ``rdev`` for a device only.

    ``OSError(EINVAL)`` for a type that is not special (a regular file is
    ``create``'s, a directory ``mkdir``'s)."""
    kind = stat.S_IFMT(mode)
    if kind not in SPECIAL_TYPES:
        raise OSError(errno.EINVAL, "mknod makes FIFOs, sockets and devices only")
    device = kind in (stat.S_IFCHR, stat.S_IFBLK)
    return kind | (mode & 0o7777), rdev if device else 0


# setattr fields a caller may pass; None means "leave as is".
SETTABLE = ("mode", "uid", "gid", "size", "atime_ns", "mtime_ns", "ctime_ns")


def rename_error(exc: OSError, path: str) -> None:
    """Make ``exc`` name ``path`` where the engine could name only an inode
    (``inode N``) or one name in a directory: the caller knows the path the
    user gave. Absolute paths (a database file, say) stay."""
    if isinstance(exc.filename, str) and not exc.filename.startswith("/"):
        exc.filename = path


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """Errors raised in the block name ``path`` (see :func:`rename_error`)."""
    try:
        yield
    except OSError as exc:
        rename_error(exc, path)
        raise


class Closable(Protocol):
    def close(self) -> None: ...


def close_all(handles: Iterable[Closable]) -> None:
    """Close every handle even when one fails; then raise the first failure
    (a write that could not land), once."""
    failure: OSError | None = None
    for handle in handles:
        try:
            handle.close()
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class Attr(NamedTuple):
    """What ``stat`` says of one inode. Times are nanoseconds since the epoch.

    A named tuple, not a frozen dataclass: every lookup builds one, and a
    frozen dataclass's ``__init__`` took 2.7 µs of a 15 µs ``info``."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int
    rdev: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_special(self) -> bool:
        """A FIFO, socket or device: no content of its own (see :meth:`Backend.mknod`)."""
        return stat.S_IFMT(self.mode) in SPECIAL_TYPES

    @property
    def blocks(self) -> int:
        """512-byte blocks, as ``st_blocks`` counts them."""
        return (self.size + 511) // 512

    def with_(self, **changes: int) -> Attr:
        return self._replace(**changes)


@dataclass(frozen=True, slots=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    blocks_available: int
    files: int
    files_free: int
    name_max: int = 255


class Handle(ABC):
    """An open regular file. It stays usable after its last name is unlinked."""

    ino: int

    @abstractmethod
    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``: fewer only at the end of the file.

        Sees every write made through any handle of this process; holes read
        as zeros.
        """

    @abstractmethod
    def write(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` (at the end for a handle opened ``O_APPEND``)
        and return ``len(data)``. Writing past the end leaves a hole of zeros.

        ``OSError(EFBIG)`` past the largest file size; ``OSError(EBADF)`` on a
        handle that cannot write; ``OSError(EROFS)`` on a read-only workspace.
        """

    @abstractmethod
    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes or extend it with zeros.

        ``OSError(EINVAL)`` for a negative size, ``OSError(EFBIG)`` past the
        largest file size.
        """

    @abstractmethod
    def flush(self) -> None:
        """Make buffered writes visible to every other reader of the agent."""

    def fsync(self, datasync: bool = False) -> None:
        self.flush()

    @abstractmethod
    def getattr(self) -> Attr:
        """The file's attributes, including writes this handle still buffers."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the file; a second close does nothing. The last close
        of a file with no name left frees it."""

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """A workspace: inodes, directory entries and file content."""

    #: the workspace mode this backend implements
    mode: str
    read_only: bool = False
    #: whether :meth:`transaction` makes a block's changes land together
    transactional: bool = False

    # -- inode operations ------------------------------------------------

    @abstractmethod
    def lookup(self, parent: int, name: str) -> Attr:
        """The inode named ``name`` in directory ``parent``.

        ``FileNotFoundError`` if there is no such entry, ``NotADirectoryError``
        if ``parent`` is not a directory.
        """

    @abstractmethod
    def getattr(self, ino: int) -> Attr:
        """The attributes of ``ino``, including writes buffered by open handles of
        this process; ``FileNotFoundError`` if it names nothing."""

    @abstractmethod
    def setattr(self, ino: int, **fields: int | None) -> Attr:
        """Change any of :data:`SETTABLE` and return the new attributes.

        ``size`` truncates or extends a regular file (``IsADirectoryError`` for
        a directory, ``OSError(EINVAL)`` for another kind); ``mode`` changes the
        permission bits only, never the file type.
        """

    @abstractmethod
    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        """Entries after ``offset`` as ``(name, attr, next_offset)``.

        Offsets are stable: an entry added or removed while a listing is under
        way never makes another entry appear twice or be skipped.
        """

    @abstractmethod
    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        """Create directory ``parent/name`` with exactly ``mode`` (no umask).

        ``FileExistsError`` if the name exists, ``OSError(EINVAL)`` for a name
        that cannot be one (empty, ``.``, ``..``, with ``/`` or NUL).
        """

    @abstractmethod
    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        """Create a new regular file and open it for reading and writing.

        ``FileExistsError`` if the name exists; names are checked as by :meth:`mkdir`.
        """

    @abstractmethod
    def open(self, ino: int, flags: int = 0) -> Handle:
        """Open a regular file; ``O_TRUNC`` in ``flags`` empties it, ``O_APPEND``
        makes every write go to the end.

        ``IsADirectoryError`` for a directory, ``OSError`` (``EINVAL``, or
        ``ELOOP`` for a symlink where the engine follows none) for another kind.
        """

    @abstractmethod
    def unlink(self, parent: int, name: str) -> None:
        """Remove the name ``parent/name`` of a non-directory.

        The inode lives on while it has other names or an open handle (in any
        process). ``IsADirectoryError`` for a directory, ``FileNotFoundError``
        if the name does not exist.
        """

    @abstractmethod
    def rmdir(self, parent: int, name: str) -> None:
        """Remove the empty directory ``parent/name``.

        ``OSError(ENOTEMPTY)`` if it has entries, ``NotADirectoryError`` if it
        is not a directory, ``FileNotFoundError`` if the name does not exist.
        """

    @abstractmethod
    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        """POSIX rename, atomic: a file at ``new_name`` is replaced in one step.

        ``flags`` takes ``RENAME_NOREPLACE`` (``FileExistsError`` if the target
        exists) and ``RENAME_EXCHANGE`` (swap both; ``FileNotFoundError`` if the
        target is missing), see ``vfs.backends.renames``. Renaming a name onto
        another name of the same inode does nothing. ``OSError(EINVAL)`` moving
        a directory into itself, ``NotADirectoryError``/``IsADirectoryError``
        for a directory over a non-directory or the reverse,
        ``OSError(ENOTEMPTY)`` over a non-empty directory.
        """

    @abstractmethod
    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        """Give ``ino`` another name and return its attributes (``nlink`` counted).

        ``PermissionError(EPERM)`` for a directory, ``FileExistsError`` if the
        name exists.
        """

    @abstractmethod
    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        """Create a symlink ``parent/name`` to ``target``, stored as given (never
        resolved here); ``FileExistsError`` if the name exists."""

    @abstractmethod
    def mknod(
        self, parent: int, name: str, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0
    ) -> Attr:
        """Create the special file ``parent/name``: a FIFO, a Unix socket, or a
        character or block device, its type and exact permission bits (no
        umask) taken from ``mode``, a device's number from ``rdev`` (0 for the
        other types).

        The engine stores the inode only: ``stat`` reports its type and
        ``rdev``, it can be renamed, linked and unlinked, and :meth:`open`
        refuses it (``OSError(EINVAL)``); the kernel serves a FIFO's or a
        socket's I/O through a mount, and a mount is ``nodev``, so a device
        node is never opened through it. ``OSError(EINVAL)`` for another type
        (see :func:`special_mode`), ``FileExistsError`` if the name exists;
        names are checked as by :meth:`mkdir`. Disk mode makes a real node,
        so a device there needs ``CAP_MKNOD`` (``PermissionError`` without).
        """

    @abstractmethod
    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino``; ``OSError(EINVAL)`` if it is not a symlink."""

    @abstractmethod
    def statfs(self) -> StatFs:
        """Sizes and counts of the filesystem the workspace is stored on."""

    @abstractmethod
    def getxattr(self, ino: int, name: bytes) -> bytes:
        """The value of extended attribute ``name``; ``OSError(ENODATA)`` if unset,
        ``OSError(EOPNOTSUPP)`` for a namespace the engine does not keep."""

    @abstractmethod
    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """Set extended attribute ``name``.

        ``flags`` takes XATTR_CREATE (``FileExistsError`` if it is set) and
        XATTR_REPLACE (``OSError(ENODATA)`` if it is not).
        """

    @abstractmethod
    def listxattr(self, ino: int) -> list[bytes]:
        """The names of the extended attributes set on ``ino``."""

    @abstractmethod
    def removexattr(self, ino: int, name: bytes) -> None:
        """Remove extended attribute ``name``; ``OSError(ENODATA)`` if it is not set."""

    # -- whole-file operations ---------------------------------------------

    @abstractmethod
    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        """An open file with no name yet in directory ``parent``, for writes that
        replace a file atomically. If it is closed (or its process dies) before
        :meth:`publish`, it leaves nothing behind."""

    @abstractmethod
    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        """Give a :meth:`tmpfile` its name, atomically replacing a file of that name.

        Readers see the old file or the whole new one, never a mix.
        ``IsADirectoryError`` if ``name`` is a directory.
        """

    @abstractmethod
    def checksum(self, ino: int) -> str:
        """A hex digest of the file's content, buffered writes included: equal
        content, equal digest (within one engine)."""

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Read without keeping a handle; backends override it to skip the open."""
        with self.open(ino) as handle:
            return handle.read(offset, size)

    def read_file(self, path: str) -> bytes:
        """The whole content of the file at ``path`` (a final symlink is followed)."""
        handle, attr = self.open_path(path)
        with handle:
            return handle.read(0, attr.size)

    def open_path(self, path: str, flags: int = 0) -> tuple[Handle, Attr]:
        """Open the file at ``path`` (a final symlink is followed) and its attributes.

        Another process may replace the file between the lookup of the name
        and the open of the inode it named; then the name is looked up again,
        as a local filesystem would open the old file or the new one, never
        fail. The attributes are the opened file's own.
        """
        with naming(path):
            attempt = 0
            while True:
                attr = self.resolve(path, follow=True)
                if attr.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
                if not attr.is_file:  # opening a FIFO or a device would block or worse
                    raise OSError(errno.EINVAL, "not a regular file", path)
                try:
                    handle = self.open(attr.ino, flags)
                except FileNotFoundError:
                    attempt += 1
                    if attempt > REOPEN_ATTEMPTS:
                        raise
                    # The replacement may still be committing: give it a moment.
                    time.sleep(min(0.0005 * attempt, 0.01))
                    continue
                try:
                    return handle, handle.getattr()
                except BaseException:
                    handle.close()
                    raise

    def write_file(self, parent: int, name: str, data: bytes, mode: int = 0o644) -> Attr:
        """Replace ``parent/name`` with ``data`` atomically (see :meth:`publish`)."""
        handle = self.tmpfile(parent, mode)
        try:
            handle.write(0, data)
            return self.publish(handle, parent, name)
        finally:
            handle.close()

    def write_plain(
        self, path: str, data: bytes, mode: int = 0o644, *, exclusive: bool = False
    ) -> Attr | None:
        """Write ``data`` as the whole file at ``path``, as :meth:`write_file` does, when
        the engine can do it without the generic name-by-name walk; else do nothing
        and return None (a symlink on the way, a name that is not a regular file,
        a missing directory, any error to report). With ``exclusive``, an
        existing name is left to the caller too.
        """
        return None

    def sync_ahead(self, handles: Sequence[Handle]) -> None:  # noqa: B027 - optional hook
        """Start making the content of these unpublished files (from :meth:`tmpfile`)
        durable, before they are published one after another: each publish then
        waits for writes already under way instead of starting its own."""

    def snapshot(self) -> contextlib.AbstractContextManager[object]:
        """A block whose reads all see one consistent state, where the backend can."""
        return contextlib.nullcontext()

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        """Copy a regular file to ``parent/name``, replacing a file there.

        Backends that share content between inodes override this to copy no bytes.
        """
        source = self.open(ino)
        target = self.tmpfile(parent, self.getattr(ino).mode & 0o7777)
        try:
            offset = 0
            while chunk := source.read(offset, 1 << 20):
                target.write(offset, chunk)
                offset += len(chunk)
            return self.publish(target, parent, name)
        finally:
            source.close()
            target.close()

    def check_writable(self) -> None:
        """Raise ``OSError(EROFS)`` when the workspace was opened read-only."""
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system")

    def shared_chunks(self, ino: int) -> SharedChunks | None:
        """The chunk rows of regular file ``ino`` in the agent database, for another
        table of that database to reference instead of copying bytes; None when
        the engine keeps the file's bytes elsewhere.

        Call inside a write transaction of the agent database and reference the
        chunk ids in that same transaction: a chunk nothing references may be
        collected. ``IsADirectoryError`` if ``ino`` is not a regular file.
        """
        return None

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        """A block whose changes land together, where the backend can promise it."""
        return contextlib.nullcontext()

    def reclaim_orphans(self) -> int:
        """Free what writers that died mid-way left behind; returns how many."""
        return 0

    def forget(self, ino: int) -> None:  # noqa: B027 - optional hook
        """The FUSE kernel no longer refers to ``ino``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds open."""

    # -- paths -----------------------------------------------------------------

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        """The inode at a workspace path.

        Symlinks in the middle of the path are followed, and the last one too
        when ``follow`` is true, but only inside the workspace: an absolute
        target, or a relative one that climbs above the root, raises
        ``PermissionError`` rather than being followed out.
        """
        walk = _Walk(self, path)
        walk.descend(split_path(path), follow)
        return walk.top or self.getattr(ROOT_INO)

    def resolve_parent(self, path: str, *, follow: bool = False) -> tuple[int, str]:
        """The directory inode that holds ``path`` and the last name in it.

        With ``follow``, a final symlink is replaced by what it points to (inside
        the workspace only, resolved from the link's own directory), as
        ``open(path, "w")`` writes through a link.
        """
        parts = split_path(path)
        if not parts:
            raise PermissionError(errno.EPERM, "the workspace root has no parent", path)
        walk = _Walk(self, path)
        walk.descend(parts[:-1], follow=True)
        name = parts[-1]
        while True:
            if walk.top is not None and not walk.top.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            parent = ROOT_INO if walk.top is None else walk.top.ino
            attr = self.lookup_or_none(parent, check_name(name)) if follow else None
            if attr is None or not attr.is_link:
                return parent, name
            target = walk.target_of(attr)
            if not target or target[-1] == "..":
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            walk.descend(target[:-1], follow=True)
            name = target[-1]

    def lookup_or_none(self, parent: int, name: str) -> Attr | None:
        try:
            return self.lookup(parent, name)
        except FileNotFoundError:
            return None


def _split_target(target: str) -> list[str]:
    """Names of a relative symlink target; ``..`` is kept for :meth:`Backend.resolve`."""
    if "\0" in target:
        raise OSError(errno.EINVAL, "symlink target contains NUL", target)
    return [part for part in target.split("/") if part not in ("", ".")]


class _Walk:
    """Name-by-name resolution from the root, keeping the chain of directories so
    that ``..`` in a symlink target climbs the real parent, never above the root."""

    def __init__(self, backend: Backend, path: str) -> None:
        self.backend = backend
        self.path = path
        self.stack: list[Attr | None] = [None]  # None is the root, fetched only if needed
        self.hops = 0

    @property
    def top(self) -> Attr | None:
        return self.stack[-1]

    def target_of(self, link: Attr) -> list[str]:
        self.hops += 1
        if self.hops > SYMLINK_HOPS:
            raise OSError(errno.ELOOP, "Too many levels of symbolic links", self.path)
        target = os.fsdecode(self.backend.readlink(link.ino))
        if target.startswith("/"):
            raise PermissionError(errno.EACCES, "symlink points outside the workspace", self.path)
        return _split_target(target)

    def descend(self, names: list[str], follow: bool) -> None:
        pending = list(reversed(names))
        while pending:
            name = pending.pop()
            if name == "..":  # only ever from a symlink target
                if len(self.stack) == 1:
                    raise PermissionError(
                        errno.EACCES, "symlink points outside the workspace", self.path
                    )
                self.stack.pop()
                continue
            here = self.top
            if here is not None and not here.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", self.path)
            try:
                attr = self.backend.lookup(ROOT_INO if here is None else here.ino, name)
            except FileNotFoundError as exc:
                exc.filename = self.path  # as open(2) would, not the one name
                raise
            if attr.is_link and (pending or follow):
                pending.extend(reversed(self.target_of(attr)))
                continue
            self.stack.append(attr)
