"""Mounts that outlive the call: checks before mounting, start, unmount, wait.

``vfs mount`` runs :func:`start`: it checks everything a user can get wrong,
then mounts one of two ways. A disk-mode workspace is a real directory, so the
kernel serves it with a bind mount (:mod:`vfs.mount.bind`) where this process
may mount (root, ``CAP_SYS_ADMIN``); otherwise, and for the other modes or when
asked, ``python -m vfs.mount`` serves it through FUSE in its own session, and
:func:`start` returns once the kernel reports the mount point mounted. The
child tells the parent through a pipe that it is ready, or the one-line reason
it is not.
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
from dataclasses import dataclass
from pathlib import Path

from vfs.backends.host import mount_table, pid_alive
from vfs.mount.bind import NOT_PERMITTED, bind, unbind
from vfs.settings import resolve_home
from vfs.state.mounts import BIND, FUSE, PRIVATE, MountRecord, MountTable
from vfs.state.registry import Registry
from vfs.workspace import Workspace

FUSE_DEVICE = Path("/dev/fuse")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
#: The filesystem type the kernel shows for a FUSE mount (``fuse.agentvfs``).
SUBTYPE = "agentvfs"
#: ``-o`` options a bind mount meets by itself: anyone may use it (subject to
#: each file's permissions, which the kernel checks), and it is always
#: ``nosuid,nodev`` (``dev`` is ignored, as FUSE mounts ignore it). Others are
#: FUSE's own.
BIND_OPTIONS = frozenset(
    {"allow_other", "allow_root", "default_permissions", "nosuid", "nodev", "dev"}
)


@dataclass(frozen=True)
class Mount:
    """A mount made by :func:`start`: a kernel bind mount, or a FUSE mount and
    the process serving it."""

    agent: str
    mountpoint: Path
    kind: str
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The serving process (FUSE); None for a bind mount, which has none."""
        return None if self.process is None else self.process.pid


def describe(record: MountRecord) -> str:
    """How a user sees one mount: where, and what serves it."""
    server = {BIND: "bind mount", PRIVATE: f"for vfs exec, pid {record.pid}"}.get(
        record.kind, f"pid {record.pid}"
    )
    return f"{record.mountpoint} ({server})"


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
    where = Path(os.path.realpath(mountpoint))
    if is_agentvfs_mount(where) and is_dead_mount(where):
        _fusermount(where, lazy=True)  # the serving process died
    try:
        os.stat(where)
    except OSError as exc:
        raise OSError(exc.errno, f"mount point: {exc.strerror}", str(where)) from None
    if not where.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "mount point is not a directory", str(where))
    # ismount() misses a bind mount from the same filesystem: ask the mount table.
    if where in mount_table() or os.path.ismount(where):
        raise OSError(errno.EBUSY, "mount point is already mounted", str(where))
    if any(where.iterdir()):
        raise OSError(errno.ENOTEMPTY, "mount point is not empty", str(where))
    registry = Registry(home)
    workspace = registry.get(agent).workspace.resolve()
    if where == workspace or where.is_relative_to(workspace):
        # Its files would show inside themselves: a walk of the tree never ends,
        # and a FUSE server reading its own mount waits for itself.
        raise OSError(
            errno.EINVAL,
            f"mount point is inside agent {agent}'s own workspace directory ({workspace})",
            str(where),
        )
    for record in MountTable(registry.db).for_agent(agent):
        raise OSError(
            errno.EBUSY,
            f"agent {agent} is already mounted at {describe(record)}",
        )
    return where


def need_fuse() -> None:
    """Raise the ``OSError`` that says what FUSE mounting lacks here, if anything."""
    if not FUSE_DEVICE.exists():
        raise OSError(
            errno.ENODEV,
            "FUSE is not available: /dev/fuse does not exist (load the fuse module, "
            "or give the container --device /dev/fuse)",
        )
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "pyfuse3"
        raise OSError(
            errno.ENOSYS,
            f"mounting through FUSE needs the fuse extra ({missing} is not installed):"
            " pip install 'agentvfs[fuse]' (needs the system packages fuse3 and libfuse3-dev)",
        ) from None


def bind_source(
    agent: str, home: Path, *, read_only: bool = False, options: Iterable[str] = ()
) -> Path | None:
    """The directory a bind mount of ``agent`` shows: its workspace directory in
    disk mode, None in the other modes (which FUSE serves).

    Refuses ``options`` a bind mount cannot honour, and first clears the temp
    files of writers that died, which FUSE hides from listings and a bind
    mount would show.
    """
    with Workspace.open(agent, home, read_only=read_only) as workspace:
        if workspace.mode != "disk":
            return None
        for option in _split(options):
            if option not in BIND_OPTIONS:
                raise ValueError(
                    f"-o {option} is a FUSE mount option; add --fuse to serve"
                    f" disk-mode agent {agent} through FUSE"
                )
        reclaim = getattr(workspace.files_backend, "reclaim_orphans", None)
        if callable(reclaim) and not read_only:
            reclaim()
        return workspace.record.workspace


def bind_workspace(
    agent: str,
    where: Path,
    home: Path,
    *,
    read_only: bool = False,
    options: Iterable[str] = (),
) -> Mount | None:
    """Bind-mount a disk-mode agent's directory at ``where`` (checked by
    :func:`check_mountable`) and record it; None if the agent is in another
    mode. ``OSError`` from the kernel as it is: ``EPERM`` where this process
    may not mount."""
    source = bind_source(agent, home, read_only=read_only, options=options)
    if source is None:
        return None
    bind(source, where, read_only=read_only)
    try:
        MountTable(Registry(home).db).add(agent, where, 0, kind=BIND, source=source)
    except BaseException:
        unbind(where, lazy=True)
        raise
    return Mount(agent, where, BIND, home)


def _split(options: Iterable[str]) -> list[str]:
    return [o.strip() for item in options for o in item.split(",") if o.strip()]


def start(
    agent: str,
    mountpoint: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    options: Iterable[str] = (),
    cache_timeout: float | None = None,
    timeout: float = START_TIMEOUT_S,
    fuse: bool = False,
    temporary: bool = False,
) -> Mount:
    """Mount ``agent`` at ``mountpoint``; return once the mount is live.

    A disk-mode agent gets a kernel bind mount where this process may mount;
    everything else (and everything with ``fuse``, and a disk-mode agent where
    the kernel refuses this process a bind mount) a FUSE mount served by a
    background process. ``options`` and ``cache_timeout`` are FUSE's. A
    ``temporary`` FUSE mount lives no longer than this process: killed, even
    by SIGKILL, its mount is flushed and unmounted, and the mount point
    directory removed. (The kernel watches the thread that calls this: start
    a temporary mount from a thread that outlives it, as ``vfs exec`` does
    from its main thread.)
    """
    home_dir = resolve_home(home)
    where = check_mountable(agent, mountpoint, home_dir)
    if not fuse:
        try:
            bound = bind_workspace(agent, where, home_dir, read_only=read_only, options=options)
        except OSError as exc:
            if exc.errno not in NOT_PERMITTED:
                raise
            bound = None
        if bound is not None:
            return bound
    need_fuse()
    process = _serve_in_background(
        agent, where, home_dir, read_only=read_only, options=options,
        cache_timeout=cache_timeout, timeout=timeout, temporary=temporary,
    )  # fmt: skip
    return Mount(agent, where, FUSE, home_dir, process)


def _serve_in_background(
    agent: str,
    where: Path,
    home_dir: Path,
    *,
    read_only: bool,
    options: Iterable[str],
    cache_timeout: float | None,
    timeout: float,
    temporary: bool = False,
) -> subprocess.Popen[bytes]:
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
    if temporary:
        command += ["--owner-pid", str(os.getpid())]
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
    table = MountTable(Registry(resolve_home(home)).db)
    records = [r for r in table.list() if r.mountpoint == where]
    if any(r.kind == PRIVATE for r in records):
        raise OSError(
            errno.EINVAL, "mounted only for the command vfs exec runs; it ends with it", str(where)
        )
    if any(r.kind == BIND for r in records):
        unbind(where, lazy=lazy)
        table.remove(where)
        return
    if where not in mount_table():
        if not records:
            raise OSError(errno.EINVAL, "not mounted", str(where))
    elif not records and not is_agentvfs_mount(where):
        raise OSError(errno.EINVAL, "not an agentvfs mount", str(where))
    elif is_dead_mount(where):
        _fusermount(where, lazy=True)
    else:
        _fusermount(where, lazy=lazy)
        if lazy:
            return
    for record in records:
        _wait_until(lambda pid=record.pid: not pid_alive(pid), timeout, "the mount process")


def stop(mount: Mount) -> None:
    """Unmount by any means: unmount, then SIGTERM, then a lazy unmount and SIGKILL.

    A bind mount still in use is detached lazily: processes that have files
    open in it keep them, as on any directory.
    """
    where = mount.mountpoint
    if mount.kind == BIND:
        try:
            unbind(where)
        except OSError:
            with contextlib.suppress(OSError):
                unbind(where, lazy=True)
        MountTable(Registry(mount.home).db).remove(where)
        return
    process = mount.process
    assert process is not None  # a FUSE mount has its server
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
    fuse: bool = False,
) -> Iterator[Mount]:
    """Mount ``agent`` at ``mountpoint`` for the ``with`` block (see :func:`start`)."""
    mount = start(
        agent, mountpoint, home=home, read_only=read_only, options=options,
        cache_timeout=cache_timeout, fuse=fuse,
    )  # fmt: skip
    try:
        yield mount
    finally:
        stop(mount)
