"""``FileTools``: the file tools a model is given, over one agent's workspace.

Every path is a workspace path (``/`` is the agent's root, never the host's);
the engine's path resolution refuses ``..`` and symlinks that lead out. Every
failure is a :class:`ToolError` with one line; results are plain JSON values.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from vfs.backends.base import Attr, Backend, Handle
from vfs.tools import search
from vfs.tools.errors import ToolError, from_os_error
from vfs.tools.specs import DEFAULT_READ_BYTES, DEFAULT_RESULTS, SPECS, check_arguments
from vfs.workspace import Workspace

FILE_MODE = 0o644
DIR_MODE = 0o755
MAX_EDIT_BYTES = 64 * 1024 * 1024  # an edit holds the file in memory twice

Result = dict[str, Any]


def _kind(attr: Attr) -> str:
    if attr.is_dir:
        return "directory"
    if attr.is_link:
        return "symlink"
    return "file" if attr.is_file else "other"


def _one_line(text: str, limit: int = 80) -> str:
    text = text if len(text) <= limit else text[:limit] + "…"
    return repr(text)


class FileTools:
    """The file tools over ``workspace``; ``read_only`` refuses every change.

    Call a tool by name with :meth:`call` (arguments checked against its
    schema in :data:`vfs.tools.SPECS`), or use the methods directly.
    """

    def __init__(self, workspace: Workspace, *, read_only: bool = False) -> None:
        self.workspace = workspace
        self.read_only = read_only or workspace.read_only
        self._table: dict[str, Callable[..., Result]] = {
            "read": self.read,
            "write": self.write,
            "edit": self.edit,
            "multi_edit": self.multi_edit,
            "append": self.append,
            "ls": self.ls,
            "glob": self.glob,
            "grep": self.grep,
            "mv": self.mv,
            "rm": self.rm,
            "mkdir": self.mkdir,
            "stat": self.stat,
            "checkpoint": self.checkpoint,
            "rollback": self.rollback,
            "diff": self.diff,
        }

    @property
    def backend(self) -> Backend:
        return self.workspace.backend

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> Result:
        """Run tool ``name``; raises :class:`ToolError` for every failure."""
        spec = SPECS.get(name)
        if spec is None:
            raise ToolError("unknown_tool", f"no tool named {name!r}")
        # Models often send null for an optional argument they mean to leave out.
        required = spec.input_schema["required"]
        arguments = {
            key: value
            for key, value in (arguments or {}).items()
            if value is not None or key in required
        }
        check_arguments(spec.input_schema, arguments)
        return self._table[name](**arguments)

    # -- plumbing ----------------------------------------------------------

    @staticmethod
    def _norm(path: str) -> str:
        return "/" + "/".join(p for p in path.split("/") if p)

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except ToolError:
            raise
        except OSError as exc:
            raise from_os_error(exc, path) from None
        except (ValueError, OverflowError) as exc:
            raise ToolError("invalid_argument", f"{path}: {exc}") from None

    def _writable(self, path: str) -> None:
        if self.read_only:
            raise ToolError("read_only", f"{path}: the workspace is read-only")

    def _open(self, path: str) -> tuple[Handle, Attr]:
        """The file at ``path`` opened, by name: a file another process replaces
        meanwhile is read whole, old or new, never missed."""
        try:
            return self.backend.open_path(path)
        except OSError as exc:
            # open_path refuses a FIFO, socket or device (reading it could block).
            if exc.errno == errno.EINVAL and not self.backend.resolve(path, follow=True).is_file:
                raise ToolError("not_a_file", f"{path}: not a regular file") from None
            raise

    def _text(self, path: str) -> tuple[str, Attr]:
        handle, attr = self._open(path)
        with handle:
            if attr.size > MAX_EDIT_BYTES:
                raise ToolError("too_large", f"{path}: too large to edit ({attr.size} bytes)")
            data = handle.read(0, attr.size)
        try:
            return data.decode("utf-8"), attr
        except UnicodeDecodeError:
            raise ToolError("not_text", f"{path}: not UTF-8 text; cannot edit") from None

    def _put(self, path: str, data: bytes, mode: int = FILE_MODE) -> None:
        """Replace the file at ``path`` (through a final symlink) atomically."""
        fs = self.workspace.fs
        head = path.rpartition("/")[0]
        if head:
            fs.makedirs(head, exist_ok=True)
        parent, name = self.backend.resolve_parent(path, follow=True)
        self.backend.write_file(parent, name, data, mode)

    # -- reading -------------------------------------------------------------

    def read(
        self,
        path: str,
        offset: int | None = None,
        length: int | None = None,
        start_line: int | None = None,
        end_line: int | None = None,
        max_bytes: int = DEFAULT_READ_BYTES,
    ) -> Result:
        path = self._norm(path)
        by_lines = start_line is not None or end_line is not None
        if by_lines and (offset is not None or length is not None):
            raise ToolError("invalid_argument", "give a byte range or a line range, not both")
        if start_line and end_line and end_line < start_line:
            raise ToolError("invalid_argument", "end_line is before start_line")
        with self._errors(path), self.backend.snapshot():
            handle, attr = self._open(path)
            with handle:
                if by_lines:
                    return self._read_lines(
                        path, handle, attr, start_line or 1, end_line, max_bytes
                    )
                begin = min(offset or 0, attr.size)
                wanted = attr.size - begin if length is None else min(length, attr.size - begin)
                data = handle.read(begin, min(wanted, max_bytes))
        result: Result = {
            "path": path,
            "size": attr.size,
            "offset": begin,
            "content": data.decode("utf-8", "replace"),
            "truncated": len(data) < wanted,
        }
        if result["truncated"]:
            stop = begin + len(data)
            result["next_offset"] = stop
            result["note"] = (
                f"[truncated: bytes {begin}-{stop} of {attr.size} shown; "
                f"continue with offset={stop}]"
            )
        return result

    def _read_lines(
        self, path: str, handle: Handle, attr: Attr, first: int, last: int | None, max_bytes: int
    ) -> Result:
        taken: list[str] = []
        used = 0
        lineno = 0
        truncated = False
        for block in search.text_blocks(handle):
            ends = block.count("\n")
            if lineno + ends < first and block.endswith("\n"):
                lineno += ends  # wholly before the range: no need to split it
                continue
            for line in search.lines_of(block, keepends=True):
                lineno += 1
                if lineno < first:
                    continue
                if last is not None and lineno > last:
                    break
                used += len(line.encode("utf-8"))
                if used > max_bytes and taken:
                    truncated = True
                    break
                taken.append(line)
            else:
                continue
            break
        result: Result = {
            "path": path,
            "size": attr.size,
            "start_line": first,
            "end_line": first + len(taken) - 1,
            "content": "".join(taken),
            "truncated": truncated,
        }
        if truncated:
            following = first + len(taken)
            result["next_line"] = following
            result["note"] = (
                f"[truncated at {max_bytes} bytes: lines {first}-{following - 1} shown; "
                f"continue with start_line={following}]"
            )
        return result

    def ls(self, path: str = "/", limit: int = 1000) -> Result:
        path = self._norm(path)
        with self._errors(path), self.backend.snapshot():
            attr = self.backend.resolve(path, follow=True)
            if not attr.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            entries = [
                {"name": name, "type": _kind(child), "size": child.size}
                for name, child, _ in self.backend.readdir(attr.ino)
                if name not in (".", "..")
            ]
        entries.sort(key=lambda entry: str(entry["name"]))
        return {"path": path, "entries": entries[:limit], "truncated": len(entries) > limit}

    def stat(self, path: str) -> Result:
        path = self._norm(path)
        with self._errors(path):
            attr = self.backend.resolve(path, follow=False)
            result: Result = {
                "path": path,
                "type": _kind(attr),
                "size": attr.size,
                "mode": oct(stat.S_IMODE(attr.mode)),
                "modified": datetime.fromtimestamp(attr.mtime_ns / 1e9, UTC).isoformat(),
            }
            if attr.is_link:
                result["target"] = os.fsdecode(self.backend.readlink(attr.ino))
        return result

    def glob(self, pattern: str, path: str = "/", limit: int = 1000) -> Result:
        root = self._norm(path)
        base, rest, depth = search.split_glob(pattern)
        top_path = self._norm(f"{root}/{base}")
        if not rest:
            raise ToolError("invalid_argument", "the glob pattern is empty")
        regex = search.glob_regex(rest)
        found: list[str] = []
        truncated = False
        with self._errors(top_path), self.backend.snapshot():
            try:
                top = self.backend.resolve(top_path, follow=True)
            except FileNotFoundError:
                return {"pattern": pattern, "paths": [], "truncated": False}
            if not top.is_dir:
                return {"pattern": pattern, "paths": [], "truncated": False}
            for relative, _attr in search.walk(self.backend, top, depth):
                if regex.match(relative):
                    if len(found) == limit:
                        truncated = True
                        break
                    found.append(f"{top_path.rstrip('/')}/{relative}")
        return {"pattern": pattern, "paths": found, "truncated": truncated}

    def grep(
        self,
        pattern: str,
        path: str = "/",
        glob: str | None = None,
        ignore_case: bool = False,
        context: int = 0,
        output: str = "content",
        limit: int = DEFAULT_RESULTS,
    ) -> Result:
        root = self._norm(path)
        try:
            regex = re.compile(pattern, re.MULTILINE | (re.IGNORECASE if ignore_case else 0))
        except re.error as exc:
            raise ToolError("invalid_argument", f"bad regular expression: {exc}") from None
        only = None
        if glob:
            only = search.glob_regex(glob if "/" in glob.strip("/") else f"**/{glob}")
        results: list[Result] = []
        truncated = False
        with self._errors(root), self.backend.snapshot():
            top = self.backend.resolve(root, follow=True)
            files: Iterator[tuple[str, Attr]]
            if top.is_dir:
                prefix = root.rstrip("/") + "/"
                files = (
                    (prefix + rel, attr)
                    for rel, attr in search.walk(self.backend, top)
                    if attr.is_file and (only is None or only.match(rel))
                )
            else:
                files = iter([(root, top)])
            for file_path, _attr in files:
                left = limit - len(results)
                try:
                    handle, _ = self.backend.open_path(file_path)
                except FileNotFoundError:
                    continue  # removed since the walk listed it, as grep -r goes on
                with handle:
                    if output == "content":
                        matches, more = search.grep_file(handle, regex, context, left)
                        results += [m.to_dict(file_path, context) for m in matches]
                    else:
                        cap = 0 if left == 0 else (1 if output == "files" else 1 << 62)
                        matches, more = search.grep_file(handle, regex, 0, cap)
                        if matches:
                            results.append(
                                {"path": file_path}
                                if output == "files"
                                else {"path": file_path, "count": len(matches)}
                            )
                        more = more and left == 0
                if more or (left == 0 and matches):
                    truncated = True
                    break
        key = "matches" if output == "content" else ("files" if output == "files" else "counts")
        return {"pattern": pattern, key: results, "truncated": truncated}

    # -- changing --------------------------------------------------------------

    def write(self, path: str, content: str) -> Result:
        path = self._norm(path)
        self._writable(path)
        data = content.encode("utf-8")
        with self._errors(path), self.backend.transaction():
            self._put(path, data)
        return {"path": path, "bytes_written": len(data)}

    def append(self, path: str, content: str) -> Result:
        path = self._norm(path)
        self._writable(path)
        data = content.encode("utf-8")
        with self._errors(path), self.workspace.fs.open(path, "ab") as handle:
            handle.write(data)
        with self._errors(path):
            size = self.backend.resolve(path, follow=True).size
        return {"path": path, "bytes_written": len(data), "size": size}

    def edit(
        self, path: str, old_string: str, new_string: str, replace_all: bool = False
    ) -> Result:
        edit = {"old_string": old_string, "new_string": new_string, "replace_all": replace_all}
        result = self.multi_edit(path, [edit])
        return {"path": result["path"], "replacements": result["replacements"]}

    def multi_edit(self, path: str, edits: list[dict[str, Any]]) -> Result:
        path = self._norm(path)
        self._writable(path)
        # One transaction where the engine has them (the read and the write are one
        # step then); elsewhere every edit is checked before the single write.
        with self._errors(path), self.backend.transaction():
            text, attr = self._text(path)
            replacements = 0
            for index, edit in enumerate(edits):
                text, count = self._apply(path, text, edit, index if len(edits) > 1 else None)
                replacements += count
            self._put(path, text.encode("utf-8"), stat.S_IMODE(attr.mode))
        return {"path": path, "edits": len(edits), "replacements": replacements}

    @staticmethod
    def _apply(path: str, text: str, edit: dict[str, Any], index: int | None) -> tuple[str, int]:
        where = path if index is None else f"{path}: edit {index + 1}"
        old, new = edit["old_string"], edit["new_string"]
        if not old:
            raise ToolError("invalid_argument", f"{where}: old_string is empty")
        if old == new:
            raise ToolError("invalid_argument", f"{where}: old_string and new_string are the same")
        count = text.count(old)
        if count == 0:
            raise ToolError("no_match", f"{where}: old_string {_one_line(old)} not found")
        if count > 1 and not edit.get("replace_all", False):
            raise ToolError(
                "not_unique",
                f"{where}: old_string {_one_line(old)} occurs {count} times; add surrounding "
                "text to make it unique, or set replace_all",
            )
        return text.replace(old, new), count

    def mv(self, source: str, destination: str, overwrite: bool = False) -> Result:
        source, destination = self._norm(source), self._norm(destination)
        self._writable(source)
        if destination == source:
            return {"source": source, "destination": destination}
        if destination.startswith(source.rstrip("/") + "/"):
            raise ToolError(
                "invalid_argument", f"{destination}: cannot move a directory into itself"
            )
        backend = self.backend
        with self._errors(source), backend.transaction():
            old_parent, old_name = backend.resolve_parent(source)
            backend.lookup(old_parent, old_name)  # not_found names the source
            head = destination.rpartition("/")[0]
            with self._errors(destination):
                if head:
                    self.workspace.fs.makedirs(head, exist_ok=True)
                new_parent, new_name = backend.resolve_parent(destination)
                if not overwrite and backend.lookup_or_none(new_parent, new_name) is not None:
                    raise ToolError(
                        "already_exists",
                        f"{destination}: already exists (set overwrite to replace it)",
                    )
                backend.rename(old_parent, old_name, new_parent, new_name)
        return {"source": source, "destination": destination}

    def rm(self, path: str, recursive: bool = False) -> Result:
        path = self._norm(path)
        self._writable(path)
        if path == "/":
            raise ToolError("invalid_argument", "/: refusing to remove the workspace root")
        with self._errors(path), self.backend.transaction():
            parent, name = self.backend.resolve_parent(path)
            attr = self.backend.lookup(parent, name)
            removed = 1
            if attr.is_dir:
                below = list(search.walk(self.backend, attr))
                if below and not recursive:
                    raise ToolError(
                        "directory_not_empty", f"{path}: directory not empty (set recursive)"
                    )
                for relative, child in reversed(below):  # children before their directory
                    child_parent, child_name = self.backend.resolve_parent(f"{path}/{relative}")
                    if child.is_dir:
                        self.backend.rmdir(child_parent, child_name)
                    else:
                        self.backend.unlink(child_parent, child_name)
                removed += len(below)
                self.backend.rmdir(parent, name)
            else:
                self.backend.unlink(parent, name)
        return {"path": path, "removed": removed}

    def mkdir(self, path: str) -> Result:
        path = self._norm(path)
        self._writable(path)
        with self._errors(path):
            self.workspace.fs.makedirs(path, exist_ok=True)
        return {"path": path}

    # -- checkpoints -----------------------------------------------------------

    def checkpoint(self, name: str | None = None, message: str | None = None) -> Result:
        self._writable(name or "checkpoint")
        with self._errors(name or "checkpoint"):
            info = self.workspace.checkpoints.create(name, message)
        return {"name": info.name, "files": info.files, "bytes": info.bytes}

    def rollback(self, name: str) -> Result:
        self._writable(name)
        with self._errors(name):
            self.workspace.checkpoints.restore(name)
        return {"rolled_back_to": name}

    def diff(self, checkpoint: str, to: str | None = None) -> Result:
        with self._errors(checkpoint if to is None else to):
            changes = self.workspace.checkpoints.diff(checkpoint, to)
        return {"changes": [change.as_dict() for change in changes]}
