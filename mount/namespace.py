"""A command in a mount namespace of its own, with a directory bind-mounted for it:
how ``vfs exec`` gives a disk-mode workspace to a command as a kernel bind mount
that no other process sees and that ends with the command (root included:
killed, ``vfs exec`` leaves no mount behind).

An unprivileged process may create a user namespace and, inside it, a mount
namespace that it owns, where it may bind-mount any directory it can reach.
The command's uid and gid are mapped to themselves, so what it creates
belongs to the user as before, and it keeps no capability once it runs (a
non-root uid loses them at ``execve``). The mount exists only in that
namespace: no other process sees it, and it ends with the last process in
it. Kernels or sandboxes that forbid user namespaces answer ``EPERM`` (or
``ENOSPC``, ``EINVAL``), which :func:`spawn` reports as "not here" (None).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from vfs.mount.bind import NOT_PERMITTED, bind, mount_call

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
#: unshare(2) errors that mean user namespaces are not available here
UNAVAILABLE = NOT_PERMITTED | {errno.EINVAL, errno.ENOSPC, errno.EUSERS}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter(uid: int, gid: int) -> None:
    """Move this (single-threaded) process into a new mount namespace, and a new
    user namespace first unless it is root (which may mount as it is, and would
    lose its access to files of unmapped owners inside one)."""
    if uid == 0:
        if _libc.unshare(CLONE_NEWNS) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot make a mount namespace: {os.strerror(code)}")
    else:
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot make a user namespace: {os.strerror(code)}")
        _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    # Nothing mounted from here on propagates back to the namespace we came from.
    mount_call(None, "/", MS_REC | MS_PRIVATE, Path("/"))


def spawn(
    command: Sequence[str],
    source: Path,
    where: Path,
    *,
    read_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes] | None:
    """Start ``command`` with ``source`` bind-mounted at ``where`` as its cwd, in
    namespaces of its own; None where user namespaces are not available.

    Errors before the command runs are ``OSError`` as the kernel gave them; a
    command that cannot be executed raises as ``subprocess.Popen`` does.
    """
    report_read, report_write = os.pipe()
    uid, gid = os.getuid(), os.getgid()

    def prepare() -> None:  # runs in the child, between fork and exec
        try:
            _enter(uid, gid)
            bind(source, where, read_only=read_only)
            os.chdir(where)
        except OSError as exc:
            message = f"{exc.errno or errno.EIO} {exc.strerror or exc}"
            os.write(report_write, message.encode("utf-8", "replace"))
            os._exit(125)

    try:
        child = subprocess.Popen(list(command), env=env, preexec_fn=prepare)
    finally:
        os.close(report_write)
    try:
        report = b""
        while piece := os.read(report_read, 4096):  # EOF: the command runs, or the child ended
            report += piece
    finally:
        os.close(report_read)
    if not report:
        return child
    child.wait()
    code_text, _, message = report.decode("utf-8", "replace").partition(" ")
    code = int(code_text)
    if code in NOT_PERMITTED or (code in UNAVAILABLE and "user namespace" in message):
        return None
    raise OSError(code, message, str(where))
