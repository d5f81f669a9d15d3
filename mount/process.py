"""Mounts as background processes: checks before mounting, start, unmount, wait.

``vfs mount`` runs :func:`start`: it checks everything a user can get wrong,
spawns ``python -m mount`` in its own session, and returns once the kernel
reports the mount point mounted. The child tells the parent through a pipe that
it is ready, or the one-line reason it is not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from vfs.backends.host import mount_table, pid_alive
from vfs.mount.session import SUBTYPE
from vfs.settings import resolve_home
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry

FUSE_DEVICE = Path("/dev/fuse")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def is_agentvfs_mount(where: Path) -> bool:
    return mount_table().get(where) == f"fuse.{SUBTYPE}"


def is_dead_mount(where: Path) -> bool:
    """A FUSE mount whose serving process is gone (its connection aborted).

    ``statfs`` asks the filesystem every time, where ``stat`` may be answered
    from the kernel's attribute cache.
    """
    try:
        os.statvfs(where)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def _fusermount(where: Path, *, lazy: bool = False) -> None:
    command = ["fusermount3", "-u", *(["-z"] if lazy else []), str(where)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        message = (done.stderr.strip().splitlines() or ["fusermount3 failed"])[-1]
        message = message.removeprefix("fusermount3: ")
        code = errno.EBUSY if "busy" in message.lower() else errno.EINVAL
        raise OSError(code, f"cannot unmount: {message}", str(where))


def check_mountable(agent: str, mountpoint: str | os.PathLike[str], home: Path) -> Path:
    """Raise the one ``OSError`` that says why ``agent`` cannot be mounted there.

    A dead mount of ours left by a killed process is cleared on the way.
    """
    if not FUSE_DEVICE.exists():
        raise OSError(
            errno.ENODEV,
            "FUSE is not available: /dev/fuse does not exist (load the fuse module, "
            "or give the container --device /dev/fuse)",
        )
    where = Path(os.path.realpath(mountpoint))
    if is_agentvfs_mount(where) and is_dead_mount(where):
        _fusermount(where, lazy=True)  # the serving process died
    try:
        os.stat(where)
    except OSError as exc:
        raise OSError(exc.errno, f"mount point: {exc.strerror}", str(where)) from None
    if not where.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "mount point is not a directory", str(where))
    if os.path.ismount(where):
        raise OSError(errno.EBUSY, "mount point is already mounted", str(where))
    if any(where.iterdir()):
        raise OSError(errno.ENOTEMPTY, "mount point is not empty", str(where))
    registry = Registry(home)
    registry.get(agent)
    for record in MountTable(registry.db).for_agent(agent):
        raise OSError(
            errno.EBUSY,
            f"agent {agent} is already mounted at {record.mountpoint} (pid {record.pid})",
        )
    return where


def start(
    agent: str,
    mountpoint: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    options: Iterable[str] = (),
    cache_timeout: float | None = None,
    timeout: float = START_TIMEOUT_S,
) -> subprocess.Popen[bytes]:
    """Mount ``agent`` in a background process; return it once the mount is live."""
    home_dir = resolve_home(home)
    where = check_mountable(agent, mountpoint, home_dir)
    log_path = Registry(home_dir).agent_dir(agent) / "mount.log"
    ready_read, ready_write = os.pipe()
    command = [
        sys.executable, "-m", "vfs.mount", agent, str(where),
        "--home", str(home_dir), "--ready-fd", str(ready_write),
    ]  # fmt: skip
    if cache_timeout is not None:
        command += ["--cache-timeout", str(cache_timeout)]
    if read_only:
        command.append("--read-only")
    for option in options:
        command += ["-o", option]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(ready_write,),
            start_new_session=True,  # a terminal's ^C or hangup does not reach it
        )
    os.close(ready_write)
    try:
        reply = _read_reply(ready_read, timeout)
    except BaseException:
        process.kill()  # never leave a half-started mount behind
        process.wait()
        raise
    finally:
        os.close(ready_read)
    if reply != "ready":
        process.wait(timeout=STOP_TIMEOUT_S)
        raise _start_error(reply, process.returncode, log_path, where)
    _wait_until(lambda: os.path.ismount(where), timeout, "the kernel to report the mount")
    return process


def _start_error(reply: str, status: int | None, log_path: Path, where: Path) -> OSError:
    """The error the mount process reported, naming the file it is about (the
    agent's database, say), else the mount point."""
    try:
        failure = json.loads(reply)
        code, message = int(failure["errno"]), str(failure["message"])
    except (ValueError, TypeError, KeyError):
        return OSError(errno.EIO, f"mount process exited ({status}); see {log_path}", str(where))
    return OSError(code, message, failure.get("path") or str(where))


def _read_reply(fd: int, timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    waiter = select.poll()  # unlike select(), any descriptor number works
    waiter.register(fd, select.POLLIN)
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not waiter.poll(left * 1000):
            message = f"mount process did not become ready in {timeout:g}s"
            return json.dumps({"errno": errno.ETIMEDOUT, "message": message})
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def _wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(errno.ETIMEDOUT, f"timed out waiting for {what}")
        time.sleep(0.02)


def unmount(
    mountpoint: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    lazy: bool = False,
    timeout: float = STOP_TIMEOUT_S,
) -> None:
    """Unmount and wait until the serving process has flushed everything and exited.

    ``lazy`` detaches the mount point at once even while files are open; the
    process serves the open files and exits after the last one is closed.
    """
    where = Path(os.path.realpath(mountpoint))
    records = [
        r for r in MountTable(Registry(resolve_home(home)).db).list() if r.mountpoint == where
    ]
    if where not in mount_table():
        if not records:
            raise OSError(errno.EINVAL, "not mounted", str(where))
    elif is_dead_mount(where):
        _fusermount(where, lazy=True)
    else:
        _fusermount(where, lazy=lazy)
        if lazy:
            return
    for record in records:
        _wait_until(lambda pid=record.pid: not pid_alive(pid), timeout, "the mount process")


def stop(process: subprocess.Popen[bytes], mountpoint: str | os.PathLike[str]) -> None:
    """Unmount by any means: unmount, then SIGTERM, then a lazy unmount and SIGKILL."""
    where = Path(mountpoint).absolute()
    with contextlib.suppress(OSError, TimeoutError):
        if process.poll() is None and where in mount_table():
            _fusermount(where)
        process.wait(timeout=STOP_TIMEOUT_S)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if where in mount_table():
        with contextlib.suppress(OSError):
            _fusermount(where, lazy=True)
    if process.poll() is None:
        process.kill()
        process.wait()


@contextlib.contextmanager
def mounted(
    agent: str,
    mountpoint: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    options: Iterable[str] = (),
    cache_timeout: float | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Serve ``agent`` at ``mountpoint`` in a child process for the ``with`` block."""
    process = start(
        agent, mountpoint, home=home, read_only=read_only, options=options,
        cache_timeout=cache_timeout,
    )  # fmt: skip
    try:
        yield process
    finally:
        stop(process, mountpoint)
