"""Host-filesystem and host-process helpers that every engine and the mount share.

- :func:`open_beneath` opens a path below a root directory descriptor and never
  leaves it, with ``openat2`` where the kernel has it and a component-by-component
  walk elsewhere;
- :func:`join` builds the root-relative paths it takes;
- :func:`renameat2` and :func:`exchange_paths` rename with Linux's flags;
- :func:`make_node` creates a FIFO, socket or device node with its exact mode;
- :func:`fd_path`, :func:`pid_alive`, :func:`process_started_at`,
  :func:`mount_table` and :func:`bind_mounted` read ``/proc``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import re
import stat
from pathlib import Path

#: ``openat2``'s number: 437 in both the x86_64 table and the generic table that
#: aarch64 uses. It is not the same on every ABI (x32 adds __X32_SYSCALL_BIT,
#: alpha, mips and ia64 offset theirs), so elsewhere the walk below is used.
_SYS_OPENAT2 = {"x86_64": 437, "amd64": 437, "aarch64": 437, "arm64": 437}.get(
    platform.machine().lower()
)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
#: The longest path a system call takes, its terminating NUL included: ``openat2``
#: refuses a path of this many bytes or more (ENAMETOOLONG).
_PATH_MAX = 4096

#: False once ``openat2`` answered ENOSYS (or on an unknown architecture); then
#: :func:`open_beneath` walks one name at a time. Setting it False forces the walk.
openat2_available = _SYS_OPENAT2 is not None

_libc = ctypes.CDLL(None, use_errno=True)
# openat2's own prototype on a private handle of syscall(2): declared argument
# types convert in C, and every path lookup in disk mode makes this call.
_openat2_call = ctypes.CDLL(None, use_errno=True).syscall
_openat2_call.restype = ctypes.c_long
_openat2_call.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]  # fmt: skip
_renameat2_call = getattr(_libc, "renameat2", None)  # glibc >= 2.28
if _renameat2_call is not None:
    _renameat2_call.restype = ctypes.c_int
    _renameat2_call.argtypes = [
        ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
    ]  # fmt: skip
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.restype = ctypes.c_int
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def join(parent: str, name: str) -> str:
    """``parent/name`` for root-relative paths, where the root itself is ``""``."""
    return f"{parent}/{name}" if parent else name


def open_beneath(
    root_fd: int, path: str, flags: int, mode: int = 0, *, inner_symlinks: bool = False
) -> int:
    """A descriptor for ``path`` (relative, non-empty) below the directory ``root_fd``.

    The last name is never followed (``O_NOFOLLOW``) and nothing resolves outside
    the root: no ``..`` above it, no absolute symlink, no ``/proc`` magic link.
    With ``inner_symlinks``, symlinks in the leading components that stay beneath
    the root are followed (as the host would follow them); without, any symlink
    on the way fails (``ELOOP``). The fallback walk for kernels without
    ``openat2`` follows no symlink at all, which is stricter, never looser.
    A path of ``PATH_MAX`` bytes or more, which a local directory still reaches
    one relative lookup at a time, is opened in pieces (see :func:`_open_in_pieces`).
    Errors are ``OSError`` from the host, naming ``path``.
    """
    global openat2_available
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if openat2_available and _SYS_OPENAT2 is not None:
        resolve = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
        if not inner_symlinks:
            resolve |= _RESOLVE_NO_SYMLINKS
        # A mode is an error unless the call can create (O_TMPFILE includes O_DIRECTORY).
        creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
        how = _open_how(flags, mode if creates else 0, resolve)
        raw = os.fsencode(path)
        if len(raw) < _PATH_MAX:
            fd = _openat2(root_fd, raw, how)
        else:
            fd = _open_in_pieces(root_fd, raw, how, path)
        if fd >= 0:
            return fd
        if -fd != errno.ENOSYS:
            raise OSError(-fd, os.strerror(-fd), path)
        openat2_available = False
    return _walk_beneath(root_fd, path, flags, mode)


@functools.lru_cache(maxsize=64)
def _open_how(flags: int, mode: int, resolve: int) -> _OpenHow:
    """The ``open_how`` of these values, built once: callers never change it."""
    return _OpenHow(flags, mode, resolve)


def _openat2(dir_fd: int, raw: bytes, how: _OpenHow) -> int:
    """One ``openat2``: the descriptor, or minus the errno."""
    assert _SYS_OPENAT2 is not None  # the callers checked
    code = errno.EAGAIN
    address, size = ctypes.addressof(how), ctypes.sizeof(how)
    # EAGAIN: a concurrent rename raced the resolution (the kernel asks to retry).
    for _ in range(16):
        fd = _openat2_call(_SYS_OPENAT2, dir_fd, raw, address, size)
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    return -code


def _open_in_pieces(root_fd: int, raw: bytes, how: _OpenHow, path: str) -> int:
    """:func:`open_beneath`'s ``openat2`` for a path too long for one call: runs of
    whole names shorter than ``PATH_MAX``, each resolved beneath the directory the
    run before it opened, which is itself beneath the root, so every step stays
    inside the root. A ``..`` is refused outright (``EXDEV``): ``RESOLVE_BENEATH``
    would bound it by its run's directory, not by the root, and the engines'
    paths never hold one. A symlink (with ``inner_symlinks``) is likewise bounded
    by its run's directory: one that climbs above it, though not out of the
    root, fails (``EXDEV``), which is stricter than one call, never looser.
    Returns the descriptor or minus the errno, as :func:`_openat2`.
    """
    names = [name for name in raw.split(b"/") if name and name != b"."]
    if not names:
        raise OSError(errno.EINVAL, "an empty path names the root itself", path)
    if b".." in names:
        raise OSError(errno.EXDEV, "path leaves the root", path)
    runs: list[bytes] = []
    for name in names:
        if runs and len(runs[-1]) + 1 + len(name) < _PATH_MAX:
            runs[-1] += b"/" + name
        else:
            runs.append(name)  # a name of PATH_MAX bytes fails in openat2: ENAMETOOLONG
    step = _OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, how.resolve)
    dir_fd = root_fd
    try:
        for run in runs[:-1]:
            fd = _openat2(dir_fd, run, step)
            if fd < 0:
                return fd
            if dir_fd != root_fd:
                os.close(dir_fd)
            dir_fd = fd
        return _openat2(dir_fd, runs[-1], how)
    finally:
        if dir_fd != root_fd:
            os.close(dir_fd)


def _walk_beneath(root_fd: int, path: str, flags: int, mode: int) -> int:
    """:func:`open_beneath` without ``openat2``: one ``O_NOFOLLOW`` open per name."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise OSError(errno.EINVAL, "an empty path names the root itself", path)
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        for part in parts[:-1]:
            if part == "..":
                raise OSError(errno.EXDEV, "path leaves the root", path)
            inner = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = inner
        if parts[-1] == "..":
            raise OSError(errno.EXDEV, "path leaves the root", path)
        return os.open(parts[-1], flags, mode, dir_fd=fd)
    finally:
        os.close(fd)


def renameat2(src_dir_fd: int, name: str, dst_dir_fd: int, new_name: str, flags: int = 0) -> None:
    """``renameat2(2)``: rename ``name`` to ``new_name`` with Linux's ``RENAME_*`` flags."""
    if not flags:
        os.rename(name, new_name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    if _renameat2_call is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available in this C library", name)
    raw, new_raw = os.fsencode(name), os.fsencode(new_name)
    if _renameat2_call(src_dir_fd, raw, dst_dir_fd, new_raw, flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), name, None, new_name)


def exchange_paths(first: os.PathLike[str] | str, second: os.PathLike[str] | str) -> None:
    """Swap two paths atomically (``renameat2(RENAME_EXCHANGE)``): at every moment
    each name holds one of the two objects, never nothing."""
    renameat2(_AT_FDCWD, os.fspath(first), _AT_FDCWD, os.fspath(second), _RENAME_EXCHANGE)


def make_node(
    name: str | os.PathLike[str],
    mode: int,
    rdev: int,
    mtime_ns: int | None = None,
    *,
    dir_fd: int | None = None,
) -> None:
    """Create the FIFO, socket or device ``name`` (in directory ``dir_fd`` if given)
    with exactly ``mode`` (no umask) and, when given, ``mtime_ns``.

    A device node needs ``CAP_MKNOD``: without it this raises ``PermissionError``
    naming ``name``, as ``mknod(2)`` does.
    """
    kind = stat.S_IFMT(mode)
    device = kind in (stat.S_IFCHR, stat.S_IFBLK)
    os.mknod(name, kind | 0o600, rdev if device else 0, dir_fd=dir_fd)
    os.chmod(name, mode & 0o7777, dir_fd=dir_fd)  # chmod never opens the node
    if mtime_ns is not None:
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def start_writeback(fd: int) -> None:
    """Start writing the dirty pages of ``fd`` to the disk without waiting
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``). It promises nothing: a later
    ``fsync`` still makes the file durable, but finds its data already on the way.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the head start


def fd_path(fd: int) -> str:
    """A path naming exactly the inode open as ``fd`` (even an ``O_PATH`` one)."""
    return f"/proc/self/fd/{fd}"


def _stat_fields(pid: int) -> list[bytes]:
    """``/proc/<pid>/stat`` after the command name: field 3 (the state) is item 0.

    The command name is parenthesised and may hold spaces or ``)``, so split
    after the last ``)``.
    """
    with open(f"/proc/{pid}/stat", "rb") as status:
        return status.read().rpartition(b")")[2].split()


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return _stat_fields(pid)[0] != b"Z"
    except (OSError, IndexError):
        return True


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), if /proc says."""
    try:
        ticks = int(_stat_fields(pid)[19])  # field 22, starttime, in clock ticks since boot
        with open("/proc/stat", "rb") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def mount_table() -> dict[Path, str]:
    """Mount point -> filesystem type, from ``/proc/self/mountinfo``."""
    found: dict[Path, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            fields = line.split()
            separator = fields.index("-")
            # Space, tab, newline and backslash in paths are octal escapes (\040).
            where = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            found[Path(where)] = fields[separator + 1]
    return found


def bind_mounted(target: Path, source: Path) -> bool:
    """``target`` is a mount point in this mount namespace and shows directory ``source``
    (a bind mount of it); ``stat`` of both names the same inode."""
    if target not in mount_table():
        return False
    try:
        shown, directory = os.stat(target), os.stat(source, follow_symlinks=False)
    except OSError:
        return False
    return (shown.st_dev, shown.st_ino) == (directory.st_dev, directory.st_ino)
