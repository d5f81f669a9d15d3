"""Validation of the names that reach a path: agent ids, entry names, workspace paths.

Nothing user-supplied is used in a host path before it passes through here.
"""

from __future__ import annotations

import errno
import re

AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_MAX = 255
PATH_MAX = 4096  # Linux's: a path of this many bytes, with its NUL, is one too long


class InvalidAgentId(ValueError):
    """An agent id that does not match ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``."""


def check_agent_id(agent: str) -> str:
    """Return ``agent`` if it is a valid agent id, else raise :class:`InvalidAgentId`."""
    if not isinstance(agent, str) or not AGENT_ID.fullmatch(agent) or agent in {".", ".."}:
        raise InvalidAgentId(
            f"invalid agent id {agent!r}: use 1-64 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return agent


def check_name(name: str) -> str:
    """Return ``name`` if it can be one entry of a directory, else raise ``OSError``."""
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, f"invalid file name {name!r}", name)
    if "/" in name or "\0" in name:
        raise OSError(errno.EINVAL, "a file name cannot contain '/' or NUL", name)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise OSError(errno.EILSEQ, "file names must be valid UTF-8", name) from None
    if len(encoded) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "file name too long", name)
    return name


def split_path(path: str) -> list[str]:
    """Split a workspace path into checked names. ``""`` and ``"/"`` are the root.

    A leading ``/`` means the workspace root, never the host's. ``.`` parts are
    dropped; ``..`` is refused rather than resolved, so no spelling of a path
    can climb out of the workspace.
    """
    if "\0" in path:
        raise OSError(errno.EINVAL, "path contains a NUL byte", path)
    if len(path) >= PATH_MAX // 4 and len(path_bytes(path)) >= PATH_MAX:
        # As a local filesystem refuses it: a tree no host path could reach is
        # one that no switch to disk mode, export or copy could write out.
        raise OSError(errno.ENAMETOOLONG, f"path too long (the limit is {PATH_MAX - 1} bytes)",
                      short_path(path))  # fmt: skip
    parts = path.split("/")
    if "" in parts or "." in parts:
        parts = [part for part in parts if part not in ("", ".")]
    if ".." in parts:
        raise PermissionError(errno.EACCES, "'..' is not allowed in a workspace path", path)
    for part in parts:
        # Every call walks a path, so the common name (short ASCII, with no NUL
        # or '/' after the checks above) is not encoded to be measured.
        if len(part) > NAME_MAX or not part.isascii():
            check_name(part)
    return parts


def join_path(parts: list[str]) -> str:
    return "/".join(parts)


def path_bytes(path: str) -> bytes:
    """``path`` as a host would pass it: absolute, in its file-name encoding."""
    return ("/" + path.strip("/")).encode("utf-8", "surrogateescape")


def short_path(path: str, keep: int = 60) -> str:
    """``path`` cut to a length an error message can show."""
    return path if len(path) <= keep else f"{path[: keep // 2]}...{path[-keep // 2 :]}"
