"""The background mount process that ``vfs mount`` starts (``python -m vfs.mount``)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import logging
import os
import signal

from vfs.backends.host import pid_alive
from vfs.mount.session import serve

_PR_SET_PDEATHSIG = 1


def _reply(fd: int | None, text: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, text.encode("utf-8", "replace") + b"\n")
        os.close(fd)
    except OSError:
        pass  # the parent gave up waiting


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mount")
    parser.add_argument("agent")
    parser.add_argument("mountpoint")
    parser.add_argument("--home")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--cache-timeout", type=float)
    parser.add_argument("-o", dest="options", action="append", default=[])
    parser.add_argument(
        "--owner-pid", type=int, help="a temporary mount: it ends, and its directory goes, with PID"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    ready_fd: int | None = args.ready_fd
    if args.owner_pid is not None and not die_with_owner(args.owner_pid):
        return 1  # the owner is gone already: nobody waits for this mount

    def ready() -> None:
        nonlocal ready_fd
        _reply(ready_fd, "ready")
        ready_fd = None

    try:
        serve(
            args.agent,
            args.mountpoint,
            home=args.home,
            read_only=args.read_only,
            options=args.options,
            cache_timeout=args.cache_timeout,
            on_ready=ready,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        logging.getLogger("agentvfs.mount").exception("mount failed")
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        # The file the error is about (the agent's database, say), for the parent to name.
        path = exc.filename if isinstance(exc, OSError) and exc.filename else None
        reply = {"errno": code, "message": " ".join(text.split()), "path": path}
        _reply(ready_fd, json.dumps(reply, default=os.fsdecode))
        return 1
    finally:
        if args.owner_pid is not None and not pid_alive(args.owner_pid):
            # Its owner (``vfs exec``) was killed before it could remove the
            # temporary mount point it made; the mount is gone, so this can.
            with contextlib.suppress(OSError):
                os.rmdir(args.mountpoint)
    return 0


def die_with_owner(owner: int) -> bool:
    """Have the kernel send SIGTERM (unmount and exit, as ``vfs umount`` asks) when
    the process that started this one dies, even by SIGKILL; False if it has already."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return True  # not Linux's prctl: the mount lives until unmounted, as any other
    return os.getppid() == owner


if __name__ == "__main__":
    raise SystemExit(main())
