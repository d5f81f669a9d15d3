"""The background mount process that ``vfs mount`` starts (``python -m vfs.mount``)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os

from vfs.mount.session import serve


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    ready_fd: int | None = args.ready_fd

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
