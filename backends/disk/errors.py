"""Host errors as disk mode reports them: naming the workspace path, never a host path."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator


def shown(rel: str) -> str:
    """A workspace-relative path as errors show it (the root is ``/``)."""
    return rel or "/"


@contextlib.contextmanager
def reported(path: str, path2: str | None = None) -> Iterator[None]:
    """Re-raise host errors naming the workspace path, never a host path."""
    try:
        yield
    except ValueError as error:  # NUL bytes and the like, refused before any syscall
        raise OSError(errno.EINVAL, str(error), shown(path)) from None
    except OSError as error:
        if error.errno is None:
            raise
        message = error.strerror or os.strerror(error.errno)
        if path2 is None:
            raise OSError(error.errno, message, shown(path)) from None
        raise OSError(error.errno, message, shown(path), None, shown(path2)) from None
