"""Kernel bind mounts of a directory: ``mount(2)`` and ``umount2(2)`` through ctypes.

A disk-mode workspace is a real directory, so the kernel can serve it at a
mount point itself, with no process in between. Calls go through libc so that
a failure is an ``OSError`` with the kernel's errno: ``EPERM`` (the caller may
not mount: no ``CAP_SYS_ADMIN`` in the mount namespace's user namespace) is
what tells :func:`vfs.mount.process.start` to fall back to FUSE.

The source is opened ``O_PATH | O_NOFOLLOW`` and mounted through
``/proc/self/fd/N``, so the mount shows exactly the directory that was opened:
a workspace directory swapped for a symlink is refused (``ELOOP``), never
followed. The mount point is opened the same way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path

from vfs.backends.host import fd_path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_RELATIME = 0x200000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

#: errors of mount(2) that mean "not allowed here", not "wrong": use FUSE instead
NOT_PERMITTED = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS})

# statvfs f_flag bit -> the mount flag a bind remount must repeat. In a user
# namespace the kernel refuses (EPERM) a remount that drops a flag the source
# mount was locked with; elsewhere repeating them keeps the source's behaviour.
_KEPT_FLAGS = (
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# The new mount API (Linux 5.12): open_tree, move_mount and mount_setattr; the
# numbers are the same in the x86_64 table and the generic one aarch64 uses.
_SYSCALLS = (
    (428, 429, 442)
    if platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")
    else None
)
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOVE_MOUNT_T_EMPTY_PATH = 0x40
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64),
    ]  # fmt: skip


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p,
]  # fmt: skip
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


def mount_call(source: str | None, target: str, flags: int, shown: Path) -> None:
    """``mount(2)`` with no filesystem type or data: bind mounts and their flags."""
    raw = None if source is None else os.fsencode(source)
    if _libc.mount(raw, os.fsencode(target), None, flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot bind-mount: {os.strerror(code)}", str(shown))


def _open_dir(path: Path, what: str) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{what} is a symlink; not followed", str(path)) from None
        raise OSError(exc.errno, f"{what}: {exc.strerror}", str(path)) from None


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def bind(source: Path, target: Path, *, read_only: bool = False) -> None:
    """Mount directory ``source`` at directory ``target`` (``nosuid``, ``nodev``).

    With ``read_only`` every change through ``target`` fails with ``EROFS``;
    the source stays writable where it is. Errors are the kernel's, as
    ``OSError``; on any error nothing is left mounted.

    The mount is made whole before it is attached (``open_tree``,
    ``mount_setattr``, ``move_mount``), so it never shows at ``target``
    without its flags. Where the kernel lacks that API (before 5.12), it is
    ``mount(2)`` and then a remount that sets the flags: a writer that opens a
    file through ``target`` in between makes a read-only remount fail (``EBUSY``)
    and nothing stays mounted.
    """
    source_fd = _open_dir(source, "workspace directory")
    try:
        target_fd = _open_dir(target, "mount point")
        try:
            expected = os.fstat(source_fd)
            whole = _bind_whole(source_fd, target_fd, read_only)
            if not whole:
                mount_call(fd_path(source_fd), fd_path(target_fd), MS_BIND, target)
        finally:
            os.close(target_fd)
        try:
            if not whole:
                # mount(2) binds without flags: they take a second call, a remount.
                kept = os.statvfs(fd_path(source_fd)).f_flag
                flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
                flags |= sum(flag for st_flag, flag in _KEPT_FLAGS if kept & st_flag)
                if read_only:
                    flags |= MS_RDONLY
                mount_call(None, str(target), flags, target)
            if not _same_inode(os.stat(target), expected):
                raise OSError(
                    errno.EIO, "the mount point changed while it was mounted", str(target)
                )
        except BaseException:
            unbind(target, lazy=True)
            raise
    finally:
        os.close(source_fd)


def _bind_whole(source_fd: int, target_fd: int, read_only: bool) -> bool:
    """Bind ``source_fd`` at ``target_fd`` with its flags in one attach; False where
    the kernel (or a filter in front of it) refuses the new mount API, and
    nothing was mounted."""
    if _SYSCALLS is None:
        return False
    open_tree, move_mount, mount_setattr = _SYSCALLS
    tree = _libc.syscall(
        open_tree, source_fd, b"", _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_EMPTY_PATH
    )
    if tree < 0:
        return False
    try:
        # A clone keeps its source mount's flags (noexec, atime): only add ours.
        flags = _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV | (_MOUNT_ATTR_RDONLY if read_only else 0)
        attr = _MountAttr(flags, 0, 0, 0)
        if (
            _libc.syscall(
                mount_setattr, tree, b"", _AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)
            )
            != 0
        ):
            return False  # the detached tree goes with its descriptor
        moved = _libc.syscall(
            move_mount,
            tree,
            b"",
            target_fd,
            b"",
            _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH,
        )
        return moved == 0
    finally:
        os.close(tree)


def unbind(target: Path, *, lazy: bool = False) -> None:
    """Unmount ``target``; ``EBUSY`` while files are open there, unless ``lazy``."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
    if _libc.umount2(os.fsencode(str(target)), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot unmount: {os.strerror(code)}", str(target))
