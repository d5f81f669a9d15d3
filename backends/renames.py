"""POSIX rename rules, shared by the engines that implement rename themselves.

The disk engine leaves these rules to the host kernel (``renameat2``); the
sqlite and hybrid engines check them here, in the kernel's order, before they
change a row.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from vfs.backends.base import Attr

#: fail with ``FileExistsError`` instead of replacing an existing target
RENAME_NOREPLACE = 1
#: swap source and target atomically; both must exist
RENAME_EXCHANGE = 2


def check_rename(
    parent: int,
    source: Attr,
    new_parent: int,
    target: Attr | None,
    new_name: str,
    flags: int,
    *,
    contains: Callable[[int, int], bool],
    is_empty: Callable[[Attr], bool],
) -> bool:
    """Check moving ``source`` (in directory ``parent``) to ``new_parent/new_name``.

    ``target`` is what ``new_name`` names now, or None. ``contains(dir_ino,
    ino)`` says whether directory ``dir_ino`` is ``ino`` or one of its
    ancestors; ``is_empty(dir)`` whether a directory has no entries.

    Returns False when POSIX says the rename does nothing (two names of one
    inode), True when the caller goes ahead.

    Raises
    ------
    OSError
        ``EINVAL`` for flags other than these two, or both at once.
    FileNotFoundError
        ``RENAME_EXCHANGE`` with no target.
    FileExistsError
        ``RENAME_NOREPLACE`` with a target.
    OSError
        ``EINVAL`` when a directory would move into itself, ``ENOTEMPTY``
        when the directory it replaces has entries.
    NotADirectoryError, IsADirectoryError
        a directory over a non-directory, or the other way round.
    """
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise OSError(errno.EINVAL, "Invalid argument: rename flags", new_name)
    if flags & RENAME_EXCHANGE:
        if target is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", new_name)
        if source.is_dir and contains(source.ino, new_parent):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", new_name)
        if target.is_dir and contains(target.ino, parent):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", new_name)
        return True
    if target is not None and flags & RENAME_NOREPLACE:
        raise FileExistsError(errno.EEXIST, "File exists", new_name)
    if source.is_dir and contains(source.ino, new_parent):
        raise OSError(errno.EINVAL, "cannot move a directory into itself", new_name)
    if target is None:
        return True
    if target.ino == source.ino:
        return False  # two names of one inode: POSIX says do nothing
    if source.is_dir and not target.is_dir:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", new_name)
    if target.is_dir and not source.is_dir:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", new_name)
    if target.is_dir and not is_empty(target):
        raise OSError(errno.ENOTEMPTY, "Directory not empty", new_name)
    return True
