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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from vfs.backends.base import ROOT_INO, Attr, Backend, Handle, StatFs, close_all
from vfs.backends.host import fd_path, join, open_beneath, pid_alive, renameat2
from vfs.backends.names import check_name

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

#: temp files of :meth:`DiskBackend.tmpfile` start with this; listings never show them
TEMP_PREFIX = ".agentvfs-tmp-"
#: the inode number reported for a host file whose st_ino is 1 (ROOT_INO is taken)
HOST_INO_ONE = (1 << 63) - 2

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_LISTINGS_KEPT = 16  # sorted listings kept for readdir continuations


def _shown(rel: str) -> str:
    return rel or "/"


@contextlib.contextmanager
def _reported(path: str, path2: str | None = None) -> Iterator[None]:
    """Re-raise host errors naming the workspace path, never a host path."""
    try:
        yield
    except ValueError as error:  # NUL bytes and the like, refused before any syscall
        raise OSError(errno.EINVAL, str(error), _shown(path)) from None
    except OSError as error:
        if error.errno is None:
            raise
        message = error.strerror or os.strerror(error.errno)
        if path2 is None:
            raise OSError(error.errno, message, _shown(path)) from None
        raise OSError(error.errno, message, _shown(path), None, _shown(path2)) from None


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
        root_st = os.fstat(self._root_fd)
        self._root_id = (root_st.st_dev, root_st.st_ino)
        self._paths: dict[int, set[str]] = {}
        self._inos: dict[str, int] = {}
        self._handles: dict[int, set[DiskHandle]] = {}
        self._listings: OrderedDict[int, tuple[list[int], list[str]]] = OrderedDict()
        self._lock = threading.RLock()

    # -- the inode map -------------------------------------------------------

    def _ino_of(self, st: os.stat_result) -> int:
        if (st.st_dev, st.st_ino) == self._root_id:
            return ROOT_INO
        return HOST_INO_ONE if st.st_ino == ROOT_INO else st.st_ino

    def _attr(self, st: os.stat_result) -> Attr:
        return Attr(
            ino=self._ino_of(st), mode=st.st_mode, nlink=st.st_nlink, uid=st.st_uid,
            gid=st.st_gid, size=st.st_size, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns, btime_ns=st.st_ctime_ns, rdev=st.st_rdev,
        )  # fmt: skip

    def _learned(self, st: os.stat_result, rel: str) -> Attr:
        attr = self._attr(st)
        if attr.ino != ROOT_INO:
            with self._lock:
                self._drop_path(rel)
                self._inos[rel] = attr.ino
                self._paths.setdefault(attr.ino, set()).add(rel)
        return attr

    def _drop_path(self, rel: str) -> None:
        with self._lock:
            ino = self._inos.pop(rel, None)
            if ino is not None:
                paths = self._paths.get(ino)
                if paths is not None:
                    paths.discard(rel)
                    if not paths:
                        del self._paths[ino]

    def _subtree(self, rel: str) -> list[tuple[str, int]]:
        prefix = rel + "/"
        return [(p, i) for p, i in self._inos.items() if p == rel or p.startswith(prefix)]

    def _move_paths(self, moves: list[tuple[str, str]]) -> None:
        """Rename mapped paths: each ``(old, new)`` moves ``old`` and all below it."""
        with self._lock:
            moved = []
            for old, new in moves:
                for path, ino in self._subtree(old):
                    moved.append((new + path[len(old) :], ino))
                    self._drop_path(path)
            for _old, new in moves:
                for path, _ino in self._subtree(new):
                    self._drop_path(path)
            for path, ino in moved:
                self._inos[path] = ino
                self._paths.setdefault(ino, set()).add(path)

    def forget(self, ino: int) -> None:
        with self._lock:
            for rel in self._paths.pop(ino, set()):
                self._inos.pop(rel, None)

    # -- opening inodes ------------------------------------------------------

    def _find(self, ino: int) -> _Node:
        if self._root_fd < 0:
            raise OSError(errno.EBADF, "the workspace is closed", str(self.root))
        if ino == ROOT_INO:
            return _Node(self._root_fd, os.fstat(self._root_fd), "")
        with self._lock:
            candidates = sorted(self._paths.get(ino, ()))
        escaped = None
        for rel in candidates:
            try:
                fd = open_beneath(self._root_fd, rel, os.O_PATH, inner_symlinks=True)
            except OSError as error:
                if error.errno in (errno.EXDEV, errno.ELOOP):
                    escaped = rel
                elif error.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise OSError(error.errno, error.strerror, rel) from None
                self._drop_path(rel)
                continue
            st = os.fstat(fd)
            if self._ino_of(st) == ino:
                return _Node(fd, st, rel)
            os.close(fd)
            self._drop_path(rel)
        with self._lock:
            handle = next(iter(self._handles.get(ino, ())), None)
            if handle is not None:  # open but without a name: the descriptor keeps it
                fd = os.dup(handle.fd)
                return _Node(fd, os.fstat(fd), handle.path)
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
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", _shown(node.rel))
            yield node

    def _writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system")

    def _own(self, path: str, uid: int, gid: int) -> None:
        """Give a new inode the caller's owner; only root can, and only root needs to."""
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.chown(path, uid, gid)

    # -- inode operations ------------------------------------------------------

    def lookup(self, parent: int, name: str) -> Attr:
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        return self._learned(st, rel)

    def getattr(self, ino: int) -> Attr:
        with self._node(ino) as node:
            return self._attr(node.st)

    def setattr(self, ino: int, **fields: int | None) -> Attr:
        self._writable()
        with self._node(ino) as node, _reported(node.rel):
            kind = stat.S_IFMT(node.st.st_mode)
            if fields.get("size") is not None:
                if kind == stat.S_IFDIR:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", _shown(node.rel))
                if kind != stat.S_IFREG:
                    raise OSError(errno.EINVAL, "not a regular file", _shown(node.rel))
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
            return self._attr(os.stat(node.proc))

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[str, Attr, int]]:
        with self._dir(ino) as directory:
            keys, names = self._listing(ino, directory, fresh=offset <= 0)
            for index in range(bisect.bisect_right(keys, offset), len(keys)):
                name = names[index]
                try:
                    st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the listing
                yield name, self._learned(st, join(directory.rel, name)), keys[index]

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
        self._writable()
        _new_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                os.mkdir(name, 0o700, dir_fd=directory.fd)
                fd = os.open(name, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=directory.fd)
                try:
                    path = fd_path(fd)
                    self._own(path, uid, gid)
                    os.chmod(path, mode & 0o7777)  # exact: no umask
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
        return self._learned(st, rel)

    def create(
        self, parent: int, name: str, mode: int, uid: int = 0, gid: int = 0
    ) -> tuple[Handle, Attr]:
        self._writable()
        _new_name(name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                fd = os.open(name, flags, 0o600, dir_fd=directory.fd)
                try:
                    self._own(fd_path(fd), uid, gid)
                    os.fchmod(fd, mode & 0o7777)
                    st = os.fstat(fd)
                except BaseException:
                    os.close(fd)
                    raise
        attr = self._learned(st, rel)
        return DiskHandle(self, fd, attr.ino, rel, writable=True), attr

    def open(self, ino: int, flags: int = 0) -> Handle:
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        if writes:
            self._writable()
        with self._node(ino) as node, _reported(node.rel):
            kind = stat.S_IFMT(node.st.st_mode)
            if kind == stat.S_IFDIR:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", _shown(node.rel))
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
                self, fd, ino, node.rel, writable=bool(writes), append=bool(flags & os.O_APPEND)
            )

    def unlink(self, parent: int, name: str) -> None:
        self._writable()
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                os.unlink(name, dir_fd=directory.fd)
        self._drop_path(rel)

    def rmdir(self, parent: int, name: str) -> None:
        self._writable()
        _existing_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                os.rmdir(name, dir_fd=directory.fd)
        with self._lock:
            for path, _ino in self._subtree(rel):
                self._drop_path(path)

    def rename(
        self, parent: int, name: str, new_parent: int, new_name: str, flags: int = 0
    ) -> None:
        self._writable()
        _existing_name(name)
        _new_name(new_name)
        with self._dir(parent) as source, self._dir(new_parent) as target:
            old_rel, new_rel = join(source.rel, name), join(target.rel, new_name)
            with _reported(old_rel, new_rel):
                renameat2(source.fd, name, target.fd, new_name, flags)
        if flags & RENAME_EXCHANGE:
            self._move_paths([(old_rel, new_rel), (new_rel, old_rel)])
        else:
            self._move_paths([(old_rel, new_rel)])

    def link(self, ino: int, new_parent: int, new_name: str) -> Attr:
        self._writable()
        _new_name(new_name)
        with self._node(ino) as node, self._dir(new_parent) as directory:
            rel = join(directory.rel, new_name)
            if stat.S_ISDIR(node.st.st_mode):
                raise PermissionError(errno.EPERM, "cannot hard-link a directory", rel)
            with _reported(rel):
                # linkat through /proc links exactly the opened inode, even a symlink
                os.link(node.proc, new_name, dst_dir_fd=directory.fd, follow_symlinks=True)
                st = os.stat(new_name, dir_fd=directory.fd, follow_symlinks=False)
        return self._learned(st, rel)

    def symlink(self, parent: int, name: str, target: bytes, uid: int = 0, gid: int = 0) -> Attr:
        self._writable()
        _new_name(name)
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                os.symlink(os.fsdecode(target), name, dir_fd=directory.fd)
                if os.geteuid() == 0 and (uid, gid) != (0, 0):
                    os.chown(name, uid, gid, dir_fd=directory.fd, follow_symlinks=False)
                st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        return self._learned(st, rel)

    def readlink(self, ino: int) -> bytes:
        with self._node(ino) as node:
            if not stat.S_ISLNK(node.st.st_mode):
                raise OSError(errno.EINVAL, "Invalid argument: not a symlink", _shown(node.rel))
            with _reported(node.rel):
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
        with self._node(ino) as node, _reported(node.rel):
            return os.getxattr(node.proc, os.fsdecode(name))

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self._writable()
        with self._node(ino) as node, _reported(node.rel):
            os.setxattr(node.proc, os.fsdecode(name), value, flags)

    def listxattr(self, ino: int) -> list[bytes]:
        with self._node(ino) as node, _reported(node.rel):
            return [os.fsencode(name) for name in os.listxattr(node.proc)]

    def removexattr(self, ino: int, name: bytes) -> None:
        self._writable()
        with self._node(ino) as node, _reported(node.rel):
            os.removexattr(node.proc, os.fsdecode(name))

    # -- whole-file operations -----------------------------------------------------

    def tmpfile(self, parent: int, mode: int = 0o644) -> Handle:
        self._writable()
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with self._dir(parent) as directory, _reported(directory.rel):
            while True:
                name = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
                with contextlib.suppress(FileExistsError):
                    fd = os.open(name, flags, 0o600, dir_fd=directory.fd)
                    break
            dir_fd = os.dup(directory.fd)
            rel = directory.rel
        os.fchmod(fd, mode & 0o7777)
        ino = self._ino_of(os.fstat(fd))
        return DiskHandle(self, fd, ino, join(rel, name), writable=True, temp=(dir_fd, name))

    def publish(self, handle: Handle, parent: int, name: str) -> Attr:
        self._writable()
        _new_name(name)
        if not isinstance(handle, DiskHandle) or handle.backend is not self or not handle.temp:
            raise OSError(errno.EINVAL, "not an unpublished tmpfile of this workspace", name)
        temp_dir_fd, temp_name = handle.temp
        os.fsync(handle.fd)  # the new content is on disk before any name points at it
        with self._dir(parent) as directory:
            rel = join(directory.rel, name)
            with _reported(rel):
                os.rename(temp_name, name, src_dir_fd=temp_dir_fd, dst_dir_fd=directory.fd)
        handle.temp = None
        handle.path = rel
        os.close(temp_dir_fd)
        return self._learned(os.fstat(handle.fd), rel)

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
        self._writable()
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
        self._writable()
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
        with self._lock:
            handles = [h for hs in self._handles.values() for h in hs]
        try:
            close_all(handles)
        finally:
            if self._root_fd >= 0:
                os.close(self._root_fd)
                self._root_fd = -1


class DiskHandle(Handle):
    """An open host file descriptor; an unlinked file stays usable through it."""

    def __init__(
        self,
        backend: DiskBackend,
        fd: int,
        ino: int,
        path: str,
        *,
        writable: bool,
        append: bool = False,
        temp: tuple[int, str] | None = None,
    ) -> None:
        self.backend = backend
        self.fd = fd
        self.ino = ino
        self.path = path
        self.writable = writable
        self.append = append
        #: (directory fd, name) of a tmpfile until it is published
        self.temp = temp
        self.closed = False
        with backend._lock:
            backend._handles.setdefault(ino, set()).add(self)

    def read(self, offset: int, size: int) -> bytes:
        with _reported(self.path):
            data = os.pread(self.fd, size, offset)
            if len(data) == size or not data:
                return data
            parts = [data]
            while len(data) < size:  # a short read before the end: keep going
                more = os.pread(self.fd, size - len(data), offset + len(data))
                if not more:
                    break
                parts.append(more)
                data = b"".join(parts)
            return data

    def _make_writable(self) -> None:
        self.backend._writable()
        if not self.writable:
            flags = os.O_RDWR | os.O_CLOEXEC | (os.O_APPEND if self.append else 0)
            with _reported(self.path):
                fd = os.open(fd_path(self.fd), flags)
            os.dup2(fd, self.fd)
            os.close(fd)
            self.writable = True

    def write(self, offset: int, data: bytes) -> int:
        self._make_writable()
        view = memoryview(data)
        done = 0
        with _reported(self.path):
            # With O_APPEND the kernel puts every write at the end, whatever the offset.
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)
        return done

    def truncate(self, size: int) -> None:
        self._make_writable()
        with _reported(self.path):
            os.ftruncate(self.fd, size)

    def flush(self) -> None:
        """Writes go straight to the host file; there is nothing to flush."""

    def fsync(self, datasync: bool = False) -> None:
        with _reported(self.path):
            (os.fdatasync if datasync else os.fsync)(self.fd)

    def getattr(self) -> Attr:
        return self.backend._attr(os.fstat(self.fd))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        backend = self.backend
        with backend._lock:
            handles = backend._handles.get(self.ino)
            if handles is not None:
                handles.discard(self)
                if not handles:
                    del backend._handles[self.ino]
        try:
            if self.temp is not None:  # never published: take the temp name away again
                dir_fd, name = self.temp
                with contextlib.suppress(OSError):
                    if (
                        os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
                        == os.fstat(self.fd).st_ino
                    ):
                        os.unlink(name, dir_fd=dir_fd)
                os.close(dir_fd)
                self.temp = None
        finally:
            os.close(self.fd)
