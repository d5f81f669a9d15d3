"""Run one command inside a private, temporary mount of an agent (``vfs exec``).

The mount lives in a fresh 0700 temporary directory for as long as the command
runs; whatever way the command ends (exit, signal, ``SIGKILL``), the mount is
unmounted and the directory removed before the status is returned. A
disk-mode agent gets a kernel bind mount where this process may mount, as
``vfs mount`` does (``fuse=True`` asks for FUSE).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from vfs.mount.namespace import spawn
from vfs.mount.process import bind_source, check_mountable, start, stop
from vfs.settings import resolve_home
from vfs.state.mounts import PRIVATE, MountTable
from vfs.state.registry import Registry

#: the environment variable that names the mount point to the command
MOUNT_ENV = "AGENT_VFS_MOUNT"
AGENT_ENV = "AGENT_VFS_AGENT"
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126
# Signals that end `vfs exec` itself: passed on to the command, so that it ends
# first and the mount is then taken down in order.
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's return code: 128+N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


@contextlib.contextmanager
def _forwarding(child: subprocess.Popen[bytes]) -> Iterator[None]:
    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    # ^C reaches the command from the terminal already (same process group):
    # ignoring it here keeps this process alive to unmount once the command ends.
    saved = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    saved[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def run_mounted(
    agent: str,
    command: Sequence[str],
    *,
    home: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    fuse: bool = False,
) -> int:
    """Mount ``agent``, run ``command`` with its cwd at the mount, unmount; the exit status.

    A disk-mode agent is bind-mounted in a mount namespace made for the
    command (for an ordinary user, inside a user namespace), where no other
    process sees it and it ends with the command; where namespaces are not
    allowed, as ``vfs mount`` would mount it (a bind mount where this process
    may mount, else FUSE). The other modes are served through FUSE. A command
    that cannot be started gives 127 (not found) or 126 (not executable), as
    a shell does, with the reason on stderr.
    """
    if not command:
        raise ValueError("no command to run")
    home_dir = resolve_home(home)
    where = Path(tempfile.mkdtemp(prefix=f"vfs-exec-{agent}-"))
    env = {**os.environ, MOUNT_ENV: str(where), AGENT_ENV: agent}
    try:
        # Only a disk-mode workspace is a directory to bind; the others go to FUSE
        # without opening the workspace and checking the mount point twice.
        if not fuse and Registry(home_dir).get(agent).mode == "disk":
            check_mountable(agent, where, home_dir)  # the same refusals as any mount
            status = _run_in_namespace(agent, command, where, home_dir, env, read_only=read_only)
            if status is not None:
                return status
        mount = start(agent, where, home=home_dir, read_only=read_only, fuse=fuse, temporary=True)
        try:
            return _run(command, lambda: subprocess.Popen(list(command), cwd=where, env=env))
        finally:
            stop(mount)
    finally:
        try:
            where.rmdir()
        except OSError as exc:  # still mounted after every attempt: say where, do not hide it
            print(f"vfs exec: could not remove {where}: {exc.strerror}", file=sys.stderr)


def _run_in_namespace(
    agent: str,
    command: Sequence[str],
    where: Path,
    home: Path,
    env: dict[str, str],
    *,
    read_only: bool,
) -> int | None:
    """Run ``command`` in a private mount namespace with the disk-mode workspace
    bind-mounted; None where user namespaces are not available."""
    source = bind_source(agent, home, read_only=read_only)
    if source is None:
        return None
    table = MountTable(Registry(home).db)
    # This process lives as long as the command: the record is live that long.
    table.add(agent, where, os.getpid(), kind=PRIVATE)
    try:

        def launch() -> subprocess.Popen[bytes]:
            child = spawn(command, source, where, read_only=read_only, env=env)
            if child is None:
                raise _Unavailable
            return child

        try:
            return _run(command, launch)
        except _Unavailable:
            return None
    finally:
        table.remove(where)


class _Unavailable(Exception):
    """User namespaces are not available here."""


def _run(command: Sequence[str], launch: Callable[[], subprocess.Popen[bytes]]) -> int:
    """Start the command, pass signals on to it, and give its exit status."""
    try:
        child = launch()
    except (FileNotFoundError, PermissionError) as exc:
        reason = "command not found" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"vfs exec: {command[0]}: {reason}", file=sys.stderr)
        return COMMAND_NOT_FOUND if isinstance(exc, FileNotFoundError) else COMMAND_NOT_EXECUTABLE
    with _forwarding(child):
        returncode = child.wait()
    return exit_status(returncode)
