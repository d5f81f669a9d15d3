"""How a request meets the kernel: errors become an errno in one place, names
are decoded one way, and an inode removed elsewhere is ESTALE."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from vfs.backends.base import Attr
from vfs.mount import counting

log = logging.getLogger("agentvfs.mount")

P = ParamSpec("P")
R = TypeVar("R")

#: ``st_blksize``: the I/O size programs pick for buffers (one FUSE request).
IO_BLOCK_SIZE = 128 * 1024


def kernel_op(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Answer an ``OSError`` with its errno and anything unexpected with EIO.

    An unexpected exception is logged with its traceback; it never reaches
    pyfuse3, which would end the mount.
    """

    name = method.__name__

    @functools.wraps(method)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> R:
        if counting.counts is not None:
            counting.counts[name] += 1
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed", method.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


@contextlib.contextmanager
def stale_if_gone() -> Iterator[None]:
    """An inode the kernel still caches but another process removed is ESTALE.

    The kernel answers ESTALE by looking the path up again (``LOOKUP_REVAL``),
    so a program sees the name's current file rather than an error.
    """
    try:
        yield
    except FileNotFoundError:
        raise OSError(errno.ESTALE, "inode no longer exists") from None


def decode_name(raw: bytes) -> str:
    """Names are UTF-8 in every front end; other bytes are refused with EILSEQ."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EILSEQ, "file names must be valid UTF-8") from None


def entry_attributes(attr: Attr, timeout: float) -> pyfuse3.EntryAttributes:
    """``attr`` as the kernel takes it, to be trusted for ``timeout`` seconds."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = attr.ino
    entry.generation = 0
    entry.entry_timeout = timeout
    entry.attr_timeout = timeout
    entry.st_mode = attr.mode
    entry.st_nlink = attr.nlink
    entry.st_uid = attr.uid
    entry.st_gid = attr.gid
    entry.st_rdev = attr.rdev
    entry.st_size = attr.size
    entry.st_blksize = IO_BLOCK_SIZE
    entry.st_blocks = attr.blocks
    entry.st_atime_ns = attr.atime_ns
    entry.st_mtime_ns = attr.mtime_ns
    entry.st_ctime_ns = attr.ctime_ns
    entry.st_birthtime_ns = attr.btime_ns
    return entry
