"""disk mode: the workspace is a real directory on the host.

Inode numbers are the host's ``st_ino`` (the root is :data:`ROOT_INO`). The
backend remembers the workspace paths it has seen for each inode and reopens
an inode through one of them, checking that the path still names that inode.

Nothing ever leaves the root: paths are opened beneath one root file
descriptor with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)``, the last
name is never followed, and every later operation goes through the opened
descriptor (``/proc/self/fd/N`` names exactly that inode) or an ``*at`` call on
an opened directory.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import xxhash

from vfs.backends.base import (
    ROOT_INO,
    WRITE_FLAGS,
    Attr,
    Backend,
    Handle,
    StatFs,
    close_all,
    special_mode,
)
from vfs.backends.disk.errors import reported, shown
from vfs.backends.disk.handle import DiskHandle
from vfs.backends.disk.inodes import HOST_INO_ONE, InodeMap
from vfs.backends.host import (
    fd_path,
    join,
    open_beneath,
    pid_alive,
    renameat2,
    start_writeback,
)
from vfs.backends.names import check_name, split_path
from vfs.backends.renames import RENAME_EXCHANGE, RENAME_NOREPLACE

#: temp files of :meth:`DiskBackend.tmpfile` start with this; listings never show them
TEMP_PREFIX = ".agentvfs-tmp-"

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_LISTINGS_KEPT = 16  # sorted listings kept for readdir continuations


def _existing_name(name: str) -> str:
    """A name that may already exist on the host: it need not be valid UTF-8."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise OSError(errno.EINVAL, f"invalid file name {name!r}", name)
    if name.startswith(TEMP_PREFIX):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
    return name


def _new_name(name: str) -> str:
    check_name(name)
    if name.startswith(TEMP_PREFIX):
        raise OSError(errno.EINVAL, f"names starting with {TEMP_PREFIX!r} are reserved", name)
    return name


def _order_key(name: str) -> int:
    """A readdir offset: a 63-bit hash of the name, never 0 (0 means "from the start")."""
    return (xxhash.xxh3_64_intdigest(os.fsencode(name)) >> 1) or 1


@dataclass(slots=True)
class _Node:
    """One inode opened ``O_PATH``: operations through :attr:`proc` reach exactly it."""

    fd: int
    st: os.stat_result
    rel: str

    @property
    def proc(self) -> str:
        return fd_path(self.fd)


class DiskBackend(Backend):
    """A workspace that is the directory ``root`` on the host."""

    mode = "disk"

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self._root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.inodes = InodeMap(os.fstat(self._root_fd))
        self._listings: OrderedDict[int, tuple[list[int], list[str]]] = OrderedDict()
        self._lock = threading.RLock()

    def _ino_of(self, st: os.stat_result) -> int:
        return self.inodes.ino_of(st)

    def forget(self, ino: int) -> None:
        self.inodes.forget(ino)

    # -- opening inodes ------------------------------------------------------

    def _find(self, ino: int) -> _Node:
        if self._root_fd < 0:
            raise OSError(errno.EBADF, "the workspace is closed", str(self.root))
        if ino == ROOT_INO:
            return _Node(self._root_fd, os.fstat(self._root_fd), "")
        escaped = None
        for rel in self.inodes.paths_of(ino):
            try:
                fd = open_beneath(self._root_fd, rel, os.O_PATH, inner_symlinks=True)
            except OSError as error:
                if error.errno in (errno.EXDEV, errno.ELOOP):
                    escaped = rel
                elif error.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise OSError(error.errno, error.strerror, rel) from None
                self.inodes.drop_path(rel)
                continue
            st = os.fstat(fd)
            if self._ino_of(st) == ino:
                return _Node(fd, st, rel)
            os.close(fd)
            self.inodes.drop_path(rel)
        reopened = self.inodes.reopen(ino)
        if reopened is not None:  # open but without a name: the descriptor keeps it
            fd, path = reopened
            return _Node(fd, os.fstat(fd), path)
        if escaped is not None:
            raise PermissionError(
                errno.EACCES, "path escapes the workspace through a symlink", escaped
            )
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"inode {ino}")

    @contextlib.contextmanager
    def _node(self, ino: int) -> Iterator[_Node]:
        node = self._find(ino)
        try:
            yield node
        finally:
            if node.fd != self._root_fd:
                os.close(node.fd)

    @contextlib.contextmanager
    def _dir(self, ino: int) -> Iterator[_Node]:
        with self._node(ino) as node:
            if not stat.S_ISDIR(node.st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", shown(node.rel))
            yield node

    def _own(self, path: str, uid: int, gid: int) -> None:
        """Give a new inode the caller's owner; only root can, and only root needs to."""
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.chown(path, uid, gid)

    # -- whole paths -------------------------------------------------------------

    def _plain(self, path: str) -> str | None:
        """``path`` relative to the root, when one ``openat2`` beneath the root may
        resolve it; None for the root itself, a reserved name, or a closed backend."""
        parts = split_path(path)  # refuses '..' and NUL, checks every name
        if not parts or self._root_fd < 0:
            return None
        if TEMP_PREFIX in path and any(p.startswith(TEMP_PREFIX) for p in parts):
            return None
        return "/".join(parts)

    def resolve(self, path: str, *, follow: bool = False) -> Attr:
        """One ``openat2`` that refuses every symlink on the way; a path with a symlink,
        or one that fails, takes the generic walk (which follows links inside the
        workspace and names the error)."""
        rel = self._plain(path)
        if rel is not None:
            try:
                fd = open_beneath(self._root_fd, rel, os.O_PATH)
            except OSError:
                pass
            else:
                try:
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
                if not (follow and stat.S_ISLNK(st.st_mode)):
                    return self.inodes.learned(st, rel)
        return super().resolve(path, follow=follow)

    def read_file(self, path: str) -> bytes:
        """A regular file's content through one ``openat2`` beneath the root."""
        rel = self._plain(path)
        if rel is not None:
            try:
                # O_NONBLOCK: a FIFO must not block the open; it is no regular file.
                fd = open_beneath(self._root_fd, rel, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                pass
            else:
                try:
                    st = os.fstat(fd)
                    if stat.S_ISREG(st.st_mode):
                        pieces = []
                        while piece := os.read(fd, max(st.st_size, 1 << 16)):
                            pieces.append(piece)
                        return b"".join(pieces)
                finally:
                    os.close(fd)
        return super().read_file(path)

    # -- inode operations ------------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        return self.inodes.learned(st, rel)

    def getattr(self, ino: int) -> Attr:
        with self._node(ino) as node:
            return self.inodes.attr_of(node.st)

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self.check_writable()
        with self._node(ino) as node, reported(node.rel):
            kind = stat.S_IFMT(node.st.st_mode)
            if fields.get("size") is not None:
                if kind == stat.S_IFDIR:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", shown(node.rel))
                if kind != stat.S_IFREG:
                    raise OSError(errno.EINVAL, "not a regular file", shown(node.rel))
                os.truncate(node.proc, int(fields["size"] or 0))
            uid, gid = fields.get("uid"), fields.get("gid")
            if uid is not None or gid is not None:  # before chmod: chown clears set-id bits
                os.chown(node.proc, -1 if uid is None else uid, -1 if gid is None else gid)
            if fields.get("mode") is not None and kind != stat.S_IFLNK:
                os.chmod(node.proc, stat.S_IMODE(int(fields["mode"] or 0)))
            atime, mtime = fields.get("atime_ns"), fields.get("mtime_ns")
            if atime is not None or mtime is not None:
                now = os.stat(node.proc)
                os.utime(node.proc, ns=(atime or now.st_atime_ns, mtime or now.st_mtime_ns))
            # ctime cannot be set on a real filesystem; the kernel keeps it.
            return self.inodes.attr_of(os.stat(node.proc))

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        with self._dir(ino) as directory:
            keys, names = self._listing(ino, directory, fresh=offset <= 0)
            for index in range(bisect.bisect_right(keys, offset), len(keys)):
                name = names[index]
                try:
                    st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the listing
                yield name, self.inodes.learned(st, join(directory.rel, name)), keys[index]

    def _listing(self, ino: int, directory: _Node, *, fresh: bool) -> tuple[list[int], list[str]]:
        """Names sorted by :func:`_order_key`; a continuation reuses the listing it started."""
        with self._lock:
            cached = self._listings.get(ino)
        if cached is not None and not fresh:
            return cached
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory.fd)
        try:
            names = [n for n in os.listdir(fd) if not n.startswith(TEMP_PREFIX)]
        finally:
            os.close(fd)
        ordered = sorted((_order_key(name), name) for name in names)
        listing = ([key for key, _ in ordered], [name for _, name in ordered])
        with self._lock:
            self._listings[ino] = listing
            self._listings.move_to_end(ino)
            while len(self._listings) > _LISTINGS_KEPT:
                self._listings.popitem(last=False)
        return listing

    def mkdir(self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        _new_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                os.mkdir(name, 0o700, dir_fd=directory.fd)
                fd = os.open(name, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=directory.fd)
                try:
                    path = fd_path(fd)
                    self._own(path, uid, gid)
                    os.chmod(path, mode & 0o7777)  # exact: no umask
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
        return self.inodes.learned(st, rel)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self.check_writable()
        _new_name(name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                fd = os.open(name, flags, 0o600, dir_fd=directory.fd)
                try:
                    self._own(fd_path(fd), uid, gid)
                    os.fchmod(fd, mode & 0o7777)
                    st = os.fstat(fd)
                except BaseException:
                    os.close(fd)
                    raise
        attr = self.inodes.learned(st, rel)
        return DiskHandle(self, self.inodes, fd, attr.ino, rel, writable=True), attr

    def open(self, ino: int, flags: int = 0) -> Handle:
        writes = flags & WRITE_FLAGS
        if writes:
            self.check_writable()
        with self._node(ino) as node, reported(node.rel):
            kind = stat.S_IFMT(node.st.st_mode)
            if kind == stat.S_IFDIR:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", shown(node.rel))
            if kind == stat.S_IFLNK:
                raise OSError(errno.ELOOP, "a symlink is not followed here", node.rel)
            if kind != stat.S_IFREG:
                raise OSError(errno.EINVAL, "not a regular file", node.rel)
            extra = flags & (os.O_TRUNC | os.O_APPEND | os.O_SYNC | os.O_DSYNC) | os.O_CLOEXEC
            if not writes:
                fd = os.open(node.proc, os.O_RDONLY | extra)
            else:
                try:  # readable too: a kernel with writeback caching reads through it
                    fd = os.open(node.proc, os.O_RDWR | extra)
                except PermissionError:
                    fd = os.open(node.proc, os.O_WRONLY | extra)
            return DiskHandle(
                self,
                self.inodes,
                fd,
                ino,
                node.rel,
                writable=bool(writes),
                append=bool(flags & os.O_APPEND),
            )

    def unlink(self, parent: int, name: str) -> None:
        self.check_writable()
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                os.unlink(name, dir_fd=directory.fd)
        self.inodes.drop_path(rel)

    def rmdir(self, parent: int, name: str) -> None:
        self.check_writable()
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                os.rmdir(name, dir_fd=directory.fd)
        self.inodes.drop_tree(rel)

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self.check_writable()
        _existing_name(name)
        _new_name(new_name)
        with self._dir(parent) as source, self._dir(new_parent) as target:
            old_rel, new_rel = join(source.rel, name), join(target.rel, new_name)
            with reported(old_rel, new_rel):
                renameat2(source.fd, name, target.fd, new_name, flags)
        if flags & RENAME_EXCHANGE:
            self.inodes.move_paths([(old_rel, new_rel), (new_rel, old_rel)])
        else:
            self.inodes.move_paths([(old_rel, new_rel)])

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self.check_writable()
        _new_name(new_name)
        with self._node(ino) as node, self._dir(new_parent) as directory:
            rel = join(directory.rel, new_name)
            if stat.S_ISDIR(node.st.st_mode):
                raise PermissionError(errno.EPERM, "cannot hard-link a directory", rel)
            with reported(rel):
                # linkat through /proc links exactly the opened inode, even a symlink
                os.link(node.proc, new_name, dst_dir_fd=directory.fd, follow_symlinks=True)
                st = os.stat(new_name, dir_fd=directory.fd, follow_symlinks=False)
        return self.inodes.learned(st, rel)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self.check_writable()
        _new_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                os.symlink(os.fsdecode(target), name, dir_fd=directory.fd)
                if os.geteuid() == 0 and (uid, gid) != (0, 0):
                    os.chown(name, uid, gid, dir_fd=directory.fd, follow_symlinks=False)
                st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        return self.inodes.learned(st, rel)

    def mknod(
        self, parent: int, name: str, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0
    ) -> Attr:
        """A real node beneath the root: ``mknodat`` on the opened parent directory."""
        self.check_writable()
        mode, rdev = special_mode(mode, rdev)
        _new_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                # Owner-only until its owner and exact mode are set: no umask, and
                # nobody else reaches a node that is not yet what was asked for.
                os.mknod(name, stat.S_IFMT(mode) | 0o600, rdev, dir_fd=directory.fd)
                fd = os.open(name, _PATH_FLAGS, dir_fd=directory.fd)
                try:
                    path = fd_path(fd)
                    self._own(path, uid, gid)
                    os.chmod(path, mode & 0o7777)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
        return self.inodes.learned(st, rel)

    def readlink(self, ino: int) -> bytes:
        with self._node(ino) as node:
            if not stat.S_ISLNK(node.st.st_mode):
                raise OSError(errno.EINVAL, "Invalid argument: not a symlink", shown(node.rel))
            with reported(node.rel):
                return os.fsencode(os.readlink("", dir_fd=node.fd))

    def statfs(self) -> StatFs:
        host = os.statvfs(self._root_fd)
        return StatFs(
            block_size=host.f_frsize or host.f_bsize, blocks=host.f_blocks,
            blocks_free=host.f_bfree, blocks_available=host.f_bavail, files=host.f_files,
            files_free=host.f_ffree, name_max=host.f_namemax,
        )  # fmt: skip

    # -- xattrs ------------------------------------------------------------------

    def getxattr(self, ino: int, name: bytes) -> bytes:
        with self._node(ino) as node, reported(node.rel):
            return os.getxattr(node.proc, os.fsdecode(name))

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self.check_writable()
        with self._node(ino) as node, reported(node.rel):
            os.setxattr(node.proc, os.fsdecode(name), value, flags)

    def listxattr(self, ino: int) -> list[bytes]:
        with self._node(ino) as node, reported(node.rel):
            return [os.fsencode(name) for name in os.listxattr(node.proc)]

    def removexattr(self, ino: int, name: bytes) -> None:
        self.check_writable()
        with self._node(ino) as node, reported(node.rel):
            os.removexattr(node.proc, os.fsdecode(name))

    # -- whole-file operations -----------------------------------------------------

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self.check_writable()
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._dir(parent) as directory, reported(directory.rel):
            while True:
                name = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
                with contextlib.suppress(FileExistsError):
                    fd = os.open(name, flags, 0o600, dir_fd=directory.fd)
                    break
            dir_fd = os.dup(directory.fd)
            rel = directory.rel
        os.fchmod(fd, mode & 0o7777)
        ino = self._ino_of(os.fstat(fd))
        return DiskHandle(
            self, self.inodes, fd, ino, join(rel, name), writable=True, temp=(dir_fd, name)
        )

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self.check_writable()
        _new_name(name)
        if not isinstance(handle, DiskHandle) or handle.backend is not self or not handle.temp:
            raise OSError(errno.EINVAL, "not an unpublished tmpfile of this workspace", name)
        temp_dir_fd, temp_name = handle.temp
        os.fsync(handle.fd)  # the new content is on disk before any name points at it
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with reported(rel):
                os.rename(temp_name, name, src_dir_fd=temp_dir_fd, dst_dir_fd=directory.fd)
        handle.temp = None
        handle.path = rel
        os.close(temp_dir_fd)
        return self.inodes.learned(os.fstat(handle.fd), rel)

    def sync_ahead(self, handles: Sequence[Handle]) -> None:
        for handle in handles:
            if isinstance(handle, DiskHandle) and handle.backend is self and handle.temp:
                start_writeback(handle.fd)

    def write_plain(
        self, path: str, data: bytes, mode: int = 0o644, *, exclusive: bool = False
    ) -> Attr | None:
        """The whole-file write through one ``openat2`` of the directory beneath the
        root (no symlink on the way), a temp file beside the name, ``fsync`` and a
        rename: what :meth:`publish` guarantees, in a dozen system calls. None
        when the generic walk must decide (a symlink, a name that is not a
        regular file, a missing directory)."""
        self.check_writable()
        rel = self._plain(path)
        if rel is None:
            return None
        head, _, name = rel.rpartition("/")
        try:
            dir_fd = (
                open_beneath(self._root_fd, head, _PATH_FLAGS | os.O_DIRECTORY)
                if head
                else self._root_fd
            )
        except OSError:
            return None
        try:
            return self._write_in(dir_fd, rel, name, data, mode, exclusive)
        finally:
            if dir_fd != self._root_fd:
                os.close(dir_fd)

    def _write_in(
        self, dir_fd: int, rel: str, name: str, data: bytes, mode: int, exclusive: bool
    ) -> Attr | None:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        except OSError:
            return None
        if st is not None and (exclusive or not stat.S_ISREG(st.st_mode)):
            return None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with reported(rel):
            while True:
                temp = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
                with contextlib.suppress(FileExistsError):
                    fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
                    break
            try:
                os.fchmod(fd, mode & 0o7777)
                view, done = memoryview(data), 0
                while done < len(view):
                    done += os.write(fd, view[done:])
                os.fsync(fd)  # the new content is on disk before any name points at it
                renameat2(dir_fd, temp, dir_fd, name, RENAME_NOREPLACE if exclusive else 0)
                st = os.fstat(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise
            finally:
                os.close(fd)
        return self.inodes.learned(st, rel)

    def checksum(self, ino: int) -> str:
        """xxh3-128 of the content, read in bounded pieces."""
        digest = xxhash.xxh3_128()
        with self.open(ino) as handle:
            assert isinstance(handle, DiskHandle)
            while piece := os.read(handle.fd, 1 << 20):
                digest.update(piece)
        return digest.hexdigest()

    def copy_file(self, ino: int, parent: int, name: str) -> Attr:
        """Copy in the kernel (``copy_file_range``; a reflink where the filesystem can)."""
        self.check_writable()
        _new_name(name)
        with self.open(ino) as source:
            assert isinstance(source, DiskHandle)
            with self.tmpfile(parent, stat.S_IMODE(os.fstat(source.fd).st_mode)) as target:
                assert isinstance(target, DiskHandle)
                try:
                    while os.copy_file_range(source.fd, target.fd, 1 << 30):
                        pass
                except OSError:  # not supported here: copy through user space
                    os.ftruncate(target.fd, 0)
                    offset = 0
                    while piece := os.pread(source.fd, 1 << 20, offset):
                        target.write(offset, piece)
                        offset += len(piece)
                return self.publish(target, parent, name)

    def reclaim_orphans(self) -> int:
        """Remove temp files left by processes that died before publishing; returns how many."""
        self.check_writable()
        removed = 0
        for _top, _dirs, files, dir_fd in os.fwalk(".", dir_fd=self._root_fd):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dir_fd)
                        removed += 1
        return removed

    def close(self) -> None:
        try:
            close_all(self.inodes.open_handles())
        finally:
            if self._root_fd >= 0:
                os.close(self._root_fd)
                self._root_fd = -1


__all__ = [
    "HOST_INO_ONE",
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "TEMP_PREFIX",
    "DiskBackend",
    "DiskHandle",
]
