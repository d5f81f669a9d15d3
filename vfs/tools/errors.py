"""``ToolError``: the one error every file tool raises, with a code and one line."""

from __future__ import annotations

import errno

# errno -> the code a tool caller (a model, an MCP client) can branch on.
_CODES = {
    errno.ENOENT: "not_found",
    errno.EEXIST: "already_exists",
    errno.EISDIR: "is_a_directory",
    errno.ENOTDIR: "not_a_directory",
    errno.ENOTEMPTY: "directory_not_empty",
    errno.EROFS: "read_only",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EINVAL: "invalid_argument",
    errno.ENAMETOOLONG: "invalid_argument",
    errno.EILSEQ: "invalid_argument",
    errno.ELOOP: "too_many_links",
    errno.ENOSPC: "no_space",
    errno.EBUSY: "busy",
}


class ToolError(Exception):
    """A tool call that failed for a reason the caller can act on.

    ``code`` is a short stable word (``not_found``, ``no_match``,
    ``read_only`` ...); ``message`` is one line naming the path.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())  # always one line

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}

    def __str__(self) -> str:
        return self.message


def from_os_error(exc: OSError, path: str) -> ToolError:
    """The ``ToolError`` for an engine error met while working on ``path``."""
    code = _CODES.get(exc.errno or 0, "io_error")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ToolError(code, f"{path}: {reason}")
