"""POSIX semantics through the mount, errno for errno against a local directory.

Each entry of ``SEQUENCES`` is one call sequence. It runs once in a fresh local
directory and once in a fresh directory of the mount; what every call returned
(or the errno it raised) must be the same in both.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_mount_support
from test_mount_support import Mounted

from vfs.backends.host import mount_table

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(source: Path, target: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, bytes(source), AT_FDCWD, bytes(target), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(source))


class Log:
    """Records what each call returned, or the errno name it failed with."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []

    def __call__(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except OSError as exc:
            self.entries.append((label, errno.errorcode.get(exc.errno or 0, exc.errno)))
            return None
        self.entries.append((label, result))
        return result

    def note(self, label: str, value: Any) -> None:
        self.entries.append((label, value))


def write_file(path: Path, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    fd = os.open(path, flags, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def size_of(path: Path) -> int:
    return os.stat(path).st_size


# -- the call sequences -------------------------------------------------------


def seq_write_and_read_at_offsets(d: Path, log: Log) -> None:
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
    log("pwrite0", os.pwrite, fd, b"hello world", 0)
    log("pwrite6", os.pwrite, fd, b"WORLD", 6)
    log("pwrite_past_end", os.pwrite, fd, b"!", 20)
    log("pread", os.pread, fd, 100, 0)
    log("pread_middle", os.pread, fd, 4, 4)
    log("pread_past_end", os.pread, fd, 10, 100)
    log("fstat_size", lambda: os.fstat(fd).st_size)
    os.close(fd)
    big = bytes(range(256)) * 1000  # crosses several 64 KiB chunks
    fd = os.open(d / "g", os.O_RDWR | os.O_CREAT, 0o644)
    log("pwrite_big", os.pwrite, fd, big, 30000)
    log("pread_big_ok", lambda: os.pread(fd, len(big) + 10, 30000) == big)
    log("pread_head_zero", lambda: os.pread(fd, 30000, 0) == bytes(30000))
    os.close(fd)


def seq_append(d: Path, log: Log) -> None:
    write_file(d / "f", b"abc")
    fd = os.open(d / "f", os.O_WRONLY | os.O_APPEND)
    log("write", os.write, fd, b"def")
    log("pwrite_appends", os.pwrite, fd, b"ghi", 0)
    os.close(fd)
    log("content", read_file, d / "f")
    fd = os.open(d / "new", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    log("write_new", os.write, fd, b"1")
    log("write_new2", os.write, fd, b"2")
    os.close(fd)
    log("content_new", read_file, d / "new")


def seq_trunc_and_excl(d: Path, log: Log) -> None:
    write_file(d / "f", b"some content")
    fd = os.open(d / "f", os.O_RDWR | os.O_TRUNC)
    log("size_after_trunc", lambda: os.fstat(fd).st_size)
    log("read_after_trunc", os.read, fd, 10)
    os.close(fd)
    log("excl_existing", os.open, d / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    fd = log("excl_new", os.open, d / "g", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    if fd is not None:
        os.close(fd)
        log("excl_new_is_fd", lambda: True)
    log("missing", os.open, d / "nope", os.O_RDONLY)
    log("dir_for_write", os.open, d, os.O_WRONLY)
    log("through_file", os.open, d / "f" / "x", os.O_RDONLY)
    log("create_in_missing_dir", os.open, d / "no" / "x", os.O_CREAT | os.O_WRONLY, 0o644)
    log("open_directory_flag_on_file", os.open, d / "f", os.O_RDONLY | os.O_DIRECTORY)


def seq_truncate_up_and_down(d: Path, log: Log) -> None:
    write_file(d / "f", b"0123456789")
    log("truncate_down", os.truncate, d / "f", 4)
    log("content_down", read_file, d / "f")
    log("truncate_up", os.truncate, d / "f", 100_000)
    log("content_up", lambda: read_file(d / "f") == b"0123" + bytes(100_000 - 4))
    fd = os.open(d / "f", os.O_RDWR)
    log("ftruncate", os.ftruncate, fd, 2)
    log("fstat_after_ftruncate", lambda: os.fstat(fd).st_size)
    log("write_after_ftruncate", os.pwrite, fd, b"Z", 5)
    os.close(fd)
    log("content_final", read_file, d / "f")
    log("truncate_dir", os.truncate, d, 0)
    log("truncate_negative", os.truncate, d / "f", -1)


def seq_sparse(d: Path, log: Log) -> None:
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
    offset = 5 * 1024 * 1024 + 7
    log("pwrite_far", os.pwrite, fd, b"tail", offset)
    log("size", lambda: os.fstat(fd).st_size)
    log("hole_is_zero", lambda: os.pread(fd, 1 << 20, 1 << 20) == bytes(1 << 20))
    log("tail", os.pread, fd, 10, offset - 2)
    os.close(fd)


def seq_rename_files(d: Path, log: Log) -> None:
    write_file(d / "a", b"A")
    write_file(d / "b", b"B")
    log("over_existing", os.rename, d / "a", d / "b")
    log("target", read_file, d / "b")
    log("source_gone", os.path.exists, d / "a")
    log("missing_source", os.rename, d / "a", d / "c")
    os.mkdir(d / "sub")
    log("into_dir", os.rename, d / "b", d / "sub" / "b")
    log("listing", lambda: sorted(os.listdir(d)))
    log("sub_listing", os.listdir, d / "sub")
    os.link(d / "sub" / "b", d / "hard")
    log("onto_own_hard_link", os.rename, d / "sub" / "b", d / "hard")
    log("both_names_stay", lambda: sorted(os.listdir(d)) + os.listdir(d / "sub"))
    log("file_over_dir", os.rename, d / "hard", d / "sub")
    log("name_too_long", os.rename, d / "hard", d / ("x" * 256))


def seq_rename_directories(d: Path, log: Log) -> None:
    for name in ("a", "b", "full"):
        os.mkdir(d / name)
    write_file(d / "a" / "inside", b"1")
    write_file(d / "full" / "x", b"x")
    write_file(d / "file", b"f")
    log("dir_rename", os.rename, d / "a", d / "c")
    log("content_follows", read_file, d / "c" / "inside")
    log("over_empty_dir", os.rename, d / "c", d / "b")
    log("after", lambda: sorted(os.listdir(d)))
    log("over_non_empty_dir", os.rename, d / "b", d / "full")
    log("into_itself", os.rename, d / "b", d / "b" / "deeper")
    log("dir_over_file", os.rename, d / "b", d / "file")
    log("nlink_parent", lambda: os.stat(d).st_nlink)
    os.mkdir(d / "b" / "child")
    log("move_child_up", os.rename, d / "b" / "child", d / "child")
    log("nlinks", lambda: (os.stat(d).st_nlink, os.stat(d / "b").st_nlink))


def seq_renameat2(d: Path, log: Log) -> None:
    write_file(d / "a", b"A")
    write_file(d / "b", b"B")
    log("noreplace_existing", renameat2, d / "a", d / "b", RENAME_NOREPLACE)
    log("noreplace_new", renameat2, d / "a", d / "c", RENAME_NOREPLACE)
    log("exchange", renameat2, d / "b", d / "c", RENAME_EXCHANGE)
    log("contents", lambda: (read_file(d / "b"), read_file(d / "c")))
    log("exchange_missing", renameat2, d / "b", d / "zz", RENAME_EXCHANGE)
    os.mkdir(d / "dir")
    write_file(d / "dir" / "in", b"in")
    log("exchange_file_and_dir", renameat2, d / "b", d / "dir", RENAME_EXCHANGE)
    log("types", lambda: (os.path.isdir(d / "b"), os.path.isfile(d / "dir")))
    log("moved_dir_content", read_file, d / "b" / "in")


def seq_directories(d: Path, log: Log) -> None:
    log("mkdir", os.mkdir, d / "a")
    log("mkdir_existing", os.mkdir, d / "a")
    log("mkdir_in_missing", os.mkdir, d / "no" / "a")
    write_file(d / "a" / "f", b"")
    log("rmdir_non_empty", os.rmdir, d / "a")
    log("rmdir_file", os.rmdir, d / "a" / "f")
    log("unlink_dir", os.unlink, d / "a")
    log("rmdir_missing", os.rmdir, d / "missing")
    log("mkdir_over_file", os.mkdir, d / "a" / "f")
    log("unlink", os.unlink, d / "a" / "f")
    log("unlink_again", os.unlink, d / "a" / "f")
    log("rmdir_now_empty", os.rmdir, d / "a")
    os.mkdir(d / "p")
    for sub in ("x", "y", "z"):
        os.mkdir(d / "p" / sub)
    log("nlink_with_subdirs", lambda: os.stat(d / "p").st_nlink)
    log("listdir", lambda: sorted(os.listdir(d / "p")))
    log("is_dir", lambda: stat.S_ISDIR(os.stat(d / "p").st_mode))
    log("mkdir_mode", os.mkdir, d / "m", 0o700)
    log("mkdir_mode_bits", lambda: oct(os.stat(d / "m").st_mode & 0o777))


def seq_unlink_open_file(d: Path, log: Log) -> None:
    write_file(d / "f", b"before")
    fd = os.open(d / "f", os.O_RDWR)
    log("unlink", os.unlink, d / "f")
    log("gone_from_listing", os.listdir, d)
    log("stat_gone", os.stat, d / "f")
    log("still_readable", os.pread, fd, 100, 0)
    log("still_writable", os.pwrite, fd, b"AFTER!", 0)
    log("reads_new", os.pread, fd, 100, 0)
    log("fstat_nlink", lambda: os.fstat(fd).st_nlink)
    log("fstat_size", lambda: os.fstat(fd).st_size)
    os.close(fd)
    write_file(d / "f", b"new file")
    log("new_file_same_name", read_file, d / "f")


def seq_hard_links(d: Path, log: Log) -> None:
    write_file(d / "a", b"one")
    log("link", os.link, d / "a", d / "b")
    log("nlinks", lambda: (os.stat(d / "a").st_nlink, os.stat(d / "b").st_nlink))
    log("same_inode", lambda: os.stat(d / "a").st_ino == os.stat(d / "b").st_ino)
    write_file(d / "b", b"two", os.O_WRONLY | os.O_TRUNC)
    log("shared_content", read_file, d / "a")
    log("link_existing", os.link, d / "a", d / "b")
    os.mkdir(d / "dir")
    log("link_dir", os.link, d / "dir", d / "dir2")
    log("link_missing", os.link, d / "nope", d / "c")
    log("unlink_one", os.unlink, d / "a")
    log("nlink_after", lambda: os.stat(d / "b").st_nlink)
    log("content_after", read_file, d / "b")


def seq_symlinks(d: Path, log: Log) -> None:
    write_file(d / "target", b"via link")
    log("symlink", os.symlink, "target", d / "link")
    log("readlink", os.readlink, d / "link")
    log("lstat_is_link", lambda: stat.S_ISLNK(os.lstat(d / "link").st_mode))
    log("stat_follows", lambda: os.stat(d / "link").st_size)
    log("open_through", read_file, d / "link")
    log("symlink_existing", os.symlink, "x", d / "link")
    log("dangling", os.symlink, "missing", d / "dangling")
    log("open_dangling", read_file, d / "dangling")
    log("readlink_file", os.readlink, d / "target")
    log("long_target", os.symlink, "t" * 1000, d / "long")
    log("long_target_length", lambda: len(os.readlink(d / "long")))
    os.mkdir(d / "dir")
    log("dir_link", os.symlink, "dir", d / "dlink")
    write_file(d / "dlink" / "inside", b"x")
    log("through_dir_link", os.listdir, d / "dir")
    log("unlink_link", os.unlink, d / "link")
    log("target_stays", read_file, d / "target")
    log("lstat_size", lambda: os.lstat(d / "dangling").st_size)


def seq_metadata(d: Path, log: Log) -> None:
    write_file(d / "f", b"x")
    log("chmod", os.chmod, d / "f", 0o640)
    log("mode", lambda: oct(os.stat(d / "f").st_mode))
    log("chmod_setuid", os.chmod, d / "f", 0o4755)
    log("mode_setuid", lambda: oct(os.stat(d / "f").st_mode))
    log("chown", os.chown, d / "f", 1234, 5678)
    log("owner", lambda: (os.stat(d / "f").st_uid, os.stat(d / "f").st_gid))
    log("utime_ns", os.utime, d / "f", ns=(1_000_000_001, 2_000_000_002))
    log("times", lambda: (os.stat(d / "f").st_atime_ns, os.stat(d / "f").st_mtime_ns))
    log("utime_old", os.utime, d / "f", ns=(-1_000_000_000, 123_456_789))
    log("times_old", lambda: (os.stat(d / "f").st_atime_ns, os.stat(d / "f").st_mtime_ns))
    before = os.stat(d / "f").st_ctime_ns
    log("chmod_again", os.chmod, d / "f", 0o600)
    log("ctime_moves_on_chmod", lambda: os.stat(d / "f").st_ctime_ns >= before)
    log("utime_now", os.utime, d / "f")
    log("utime_now_is_now", lambda: os.stat(d / "f").st_mtime_ns > 2_000_000_002)
    log("symlink_for_lchown", os.symlink, "f", d / "l")
    log("lchown", os.lchown, d / "l", 7, 8)
    log("link_owner", lambda: (os.lstat(d / "l").st_uid, os.stat(d / "l").st_uid))
    log("chmod_missing", os.chmod, d / "nope", 0o600)
    log("mtime_moves_on_write", _mtime_moves_on_write, d / "f")


def _mtime_moves_on_write(path: Path) -> bool:
    os.utime(path, ns=(0, 0))
    write_file(path, b"new", os.O_WRONLY)
    return os.stat(path).st_mtime_ns > 0


def seq_statfs_and_names(d: Path, log: Log) -> None:
    log("namemax", lambda: os.statvfs(d).f_namemax)
    log("has_blocks", lambda: os.statvfs(d).f_blocks > 0 and os.statvfs(d).f_bsize > 0)
    log("name_255", write_file, d / ("n" * 255), b"ok")
    log("name_256", write_file, d / ("n" * 256), b"no")
    log("unicode_name", write_file, d / "naïve 文件.txt", b"u")
    log("listing", lambda: sorted(os.listdir(d)))


def seq_fsync(d: Path, log: Log) -> None:
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"durable")
    log("fsync", os.fsync, fd)
    os.write(fd, b" data")
    log("fdatasync", os.fdatasync, fd)
    os.close(fd)
    log("content", read_file, d / "f")
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    log("fsync_dir", os.fsync, dfd)
    os.close(dfd)


def seq_xattrs(d: Path, log: Log) -> None:
    write_file(d / "f", b"")
    log("set", os.setxattr, d / "f", "user.one", b"1")
    log("set2", os.setxattr, d / "f", "user.two", b"\x00binary\xff")
    log("get", os.getxattr, d / "f", "user.two")
    log("list", lambda: sorted(a for a in os.listxattr(d / "f") if a.startswith("user.")))
    log("create_existing", os.setxattr, d / "f", "user.one", b"x", os.XATTR_CREATE)
    log("replace_missing", os.setxattr, d / "f", "user.three", b"x", os.XATTR_REPLACE)
    log("replace_existing", os.setxattr, d / "f", "user.one", b"uno", os.XATTR_REPLACE)
    log("get_replaced", os.getxattr, d / "f", "user.one")
    log("remove", os.removexattr, d / "f", "user.one")
    log("get_removed", os.getxattr, d / "f", "user.one")
    log("remove_missing", os.removexattr, d / "f", "user.one")
    log("set_empty_value", os.setxattr, d / "f", "user.e", b"")
    log("empty_value", os.getxattr, d / "f", "user.e")
    os.mkdir(d / "dir")
    log("set_on_dir", os.setxattr, d / "dir", "user.d", b"D")
    log("on_dir", os.getxattr, d / "dir", "user.d")


def seq_readdir_while_changing(d: Path, log: Log) -> None:
    names = [f"f{i:04d}" for i in range(600)]
    for name in names:
        write_file(d / name, b"")
    removed = set(names[300:400])
    seen: list[str] = []
    with os.scandir(d) as it:
        for i, entry in enumerate(it):
            seen.append(entry.name)
            if i == 150:
                for name in removed:
                    os.unlink(d / name)
                for j in range(100):
                    write_file(d / f"new{j:03d}", b"")
    untouched = set(names) - removed
    log.note("no_duplicates", len(seen) == len(set(seen)))
    log.note("untouched_all_seen", untouched <= set(seen))
    log.note("final_count", len(os.listdir(d)))


def seq_mmap(d: Path, log: Log) -> None:
    write_file(d / "f", b"a" * 10000)
    with open(d / "f", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        log("mmap_read", lambda: m[9990:10000])
        m[0:5] = b"HELLO"
        m[8000:8003] = b"XYZ"
        m.flush()
    log("seen_by_read", lambda: read_file(d / "f")[:6] + read_file(d / "f")[7999:8004])
    with open(d / "f", "r+b") as f:
        f.seek(100)
        f.write(b"written")
        f.flush()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            log("mmap_sees_write", lambda: m[100:107])
    log("size", size_of, d / "f")


def _kind(path: Path) -> str:
    return stat.filemode(os.lstat(path).st_mode)


def _entry_kinds(d: Path) -> list[tuple[str, bool, bool, bool]]:
    """Names with what readdir's d_type says of each (no stat behind it)."""
    with os.scandir(d) as it:
        return sorted((e.name, e.is_file(), e.is_dir(), e.is_symlink()) for e in it)


def seq_fifos(d: Path, log: Log) -> None:
    log("mkfifo", os.mkfifo, d / "p", 0o640)
    log("mkfifo_existing", os.mkfifo, d / "p")
    log("mkfifo_in_missing_dir", os.mkfifo, d / "no" / "p")
    log("kind", _kind, d / "p")
    log("size", size_of, d / "p")
    log("d_type", _entry_kinds, d)
    fd = log("open_read_nonblocking", os.open, d / "p", os.O_RDONLY | os.O_NONBLOCK)
    log("read_without_writer", os.read, fd, 10)
    writer = log("open_write_nonblocking", os.open, d / "p", os.O_WRONLY | os.O_NONBLOCK)
    log("write", os.write, writer, b"through the pipe")
    log("read", os.read, fd, 100)
    log("fstat_kind", lambda: stat.filemode(os.fstat(fd).st_mode))
    os.close(writer)
    os.close(fd)
    log("write_without_reader", os.open, d / "p", os.O_WRONLY | os.O_NONBLOCK)
    log("truncate", os.truncate, d / "p", 0)
    log("chmod", os.chmod, d / "p", 0o600)
    log("kind_after_chmod", _kind, d / "p")
    log("setxattr_user", os.setxattr, d / "p", "user.x", b"1")
    log("getxattr_user", os.getxattr, d / "p", "user.x")
    log("link", os.link, d / "p", d / "q")
    log("nlink", lambda: os.lstat(d / "q").st_nlink)
    log("rename", os.rename, d / "q", d / "r")
    write_file(d / "f", b"file")
    log("rename_over_file", os.rename, d / "r", d / "f")
    log("replaced", _kind, d / "f")
    log("unlink", os.unlink, d / "p")
    log("nlink_after", lambda: os.lstat(d / "f").st_nlink)
    log("listing", lambda: sorted(os.listdir(d)))


def seq_mknod(d: Path, log: Log) -> None:
    log("socket_node", os.mknod, d / "s", stat.S_IFSOCK | 0o600)
    log("fifo_node", os.mknod, d / "p", stat.S_IFIFO | 0o644)
    log("regular_node", os.mknod, d / "f", stat.S_IFREG | 0o644)
    log("kinds", lambda: [_kind(d / n) for n in ("s", "p", "f")])
    log("existing", os.mknod, d / "p", stat.S_IFIFO | 0o644)
    log("d_type", _entry_kinds, d)
    if os.geteuid() == 0:  # devices need CAP_MKNOD; the mount is nodev, so none is opened
        log("char_device", os.mknod, d / "c", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        log("block_device", os.mknod, d / "b", stat.S_IFBLK | 0o660, os.makedev(7, 200))
        log("devices", lambda: [(_kind(d / n), os.lstat(d / n).st_rdev) for n in "cb"])
        log("device_rename", os.rename, d / "c", d / "c2")
        log("device_unlink", os.unlink, d / "b")
    log("listing", lambda: sorted(os.listdir(d)))


def seq_unix_sockets(d: Path, log: Log) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        log("bind", server.bind, str(d / "sock"))
        log("bind_existing", socket.socket(socket.AF_UNIX).bind, str(d / "sock"))
        log("kind", _kind, d / "sock")
        log("connect_before_listen", client.connect, str(d / "sock"))
        client.close()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.listen(1)
        log("connect", client.connect, str(d / "sock"))
        conn, _ = server.accept()
        with conn:
            log("send", client.sendall, b"over the socket")
            log("recv", conn.recv, 100)
        log("open", os.open, d / "sock", os.O_RDONLY)
        log("rename", os.rename, d / "sock", d / "moved")
        log("d_type", _entry_kinds, d)
    finally:
        server.close()
        client.close()
    log("connect_after_close", socket.socket(socket.AF_UNIX).connect, str(d / "moved"))
    log("unlink", os.unlink, d / "moved")
    log("listing", os.listdir, d)


#: 15 directories and a file name of 255 bytes: 4,095 bytes (PATH_MAX - 1), the
#: longest path the kernel takes, so the path from the workspace root is longer.
_DEEP = "/".join([f"{i:02d}" + "d" * 253 for i in range(15)] + ["f" * 255])


def _entries(path: str, dir_fd: int) -> list[str]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def _opened(path: str, dir_fd: int, flags: int, use: Callable[[int], Any]) -> Any:
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        return use(fd)
    finally:
        os.close(fd)


def seq_path_max(d: Path, log: Log) -> None:
    """pjdfstest's PATH_MAX steps: a 4,095-byte path relative to a descriptor of
    ``d``, its directories made one ``mkdirat`` at a time."""
    top = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.dup(top)
        for name in _DEEP.split("/")[:-1]:
            log("mkdir", os.mkdir, name, 0o755, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        log("stat_deepest", lambda: stat.S_ISDIR(os.stat(fd).st_mode))
        os.close(fd)
        created = log(
            "create", os.open, _DEEP, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=top
        )
        if created is not None:
            log("write", os.write, created, b"deep")
            log("pread", os.pread, created, 10, 0)
            os.close(created)
        log("size", lambda: os.stat(_DEEP, dir_fd=top).st_size)
        log("chmod", os.chmod, _DEEP, 0o600, dir_fd=top)
        log("mode", lambda: stat.S_IMODE(os.stat(_DEEP, dir_fd=top).st_mode))
        log("truncate", _opened, _DEEP, top, os.O_WRONLY, lambda f: os.ftruncate(f, 2))
        log("reopen_read", _opened, _DEEP, top, os.O_RDONLY, lambda f: os.read(f, 10))
        moved = _DEEP[:-1] + "g"
        log("rename", os.rename, _DEEP, moved, src_dir_fd=top, dst_dir_fd=top)
        log("stat_old", os.stat, _DEEP, dir_fd=top)
        log("listing", _entries, os.path.dirname(_DEEP), top)
        log("symlink", os.symlink, "target", _DEEP, dir_fd=top)
        log("readlink", os.readlink, _DEEP, dir_fd=top)
        log("unlink_link", os.unlink, _DEEP, dir_fd=top)
        log("mkfifo", os.mkfifo, _DEEP, 0o644, dir_fd=top)
        log("is_fifo", lambda: stat.S_ISFIFO(os.stat(_DEEP, dir_fd=top).st_mode))
        log("unlink_fifo", os.unlink, _DEEP, dir_fd=top)
        log("mkdir_last", os.mkdir, _DEEP, 0o755, dir_fd=top)
        log("rmdir_last", os.rmdir, _DEEP, dir_fd=top)
        log("unlink", os.unlink, moved, dir_fd=top)
        log("too_long", os.open, _DEEP + "x", os.O_RDONLY, dir_fd=top)
        log("gone", os.stat, _DEEP, dir_fd=top)
        log("listing_after", _entries, os.path.dirname(_DEEP), top)
    finally:
        os.close(top)


module_mount = test_mount_support.module_mount

SEQUENCES: dict[str, Callable[[Path, Log], None]] = {
    name.removeprefix("seq_"): fn for name, fn in globals().items() if name.startswith("seq_")
}


@pytest.mark.parametrize("sequence", sorted(SEQUENCES))
def test_call_sequence_matches_local_directory(
    module_mount: Mounted, tmp_path: Path, sequence: str
) -> None:
    run = SEQUENCES[sequence]
    local = tmp_path / "local"
    local.mkdir()
    in_mount = module_mount.root / f"{sequence}-{os.getpid()}"
    in_mount.mkdir()
    expected, got = Log(), Log()
    run(local, expected)
    run(in_mount, got)
    assert got.entries == expected.entries


def test_rename_over_existing_file_is_atomic(module_mount: Mounted) -> None:
    d = module_mount.root / "atomic-rename"
    d.mkdir()
    write_file(d / "target", b"old")
    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                content = read_file(d / "target")
            except OSError as exc:
                failures.append(errno.errorcode.get(exc.errno or 0, "?"))
                continue
            if content not in (b"old", b"new"):
                failures.append(repr(content))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            write_file(d / "tmp", b"new" if i % 2 else b"old")
            os.rename(d / "tmp", d / "target")
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_mount_is_listed_in_the_mount_table_as_its_kind(module_mount: Mounted) -> None:
    listed = mount_table()[module_mount.root.resolve()]
    if module_mount.kind == "bind":  # the workspace's own filesystem, shown again
        assert not listed.startswith("fuse")
    else:
        assert listed == "fuse.agentvfs"
