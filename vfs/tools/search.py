"""glob and grep over a backend: a tree walk through ``readdir`` and streamed reads.

Nothing here mounts or copies: names come from the engine's directory entries
and content from ranged reads, one block at a time, so a large file is never
held whole in memory.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from vfs.backends.base import Attr, Backend, Handle

READ_BLOCK = 1 << 20
LINE_CLIP = 500  # characters of a matching line shown in a result
BINARY_SNIFF = 8192  # a NUL in the first bytes marks a file binary, as grep does


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a ``/``-separated glob: ``*``, ``?``, ``[...]`` within a name,
    ``**`` as a whole segment for any number of directories."""
    parts: list[str] = []
    segments = pattern.strip("/").split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        parts.append(_segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := segment.find("]", i + 2)) != -1:
            body = segment[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def has_magic(text: str) -> bool:
    return any(char in text for char in "*?[")


def split_glob(pattern: str) -> tuple[str, str, int | None]:
    """``(base, rest, depth)``: the literal leading directories, the pattern below
    them, and how deep a walk must go (``None``: no limit, for ``**``)."""
    segments = [s for s in pattern.split("/") if s]
    literal: list[str] = []
    while len(segments) > 1 and not has_magic(segments[0]):
        literal.append(segments.pop(0))
    depth = None if "**" in segments else len(segments)
    return "/" + "/".join(literal), "/".join(segments), depth


def walk(backend: Backend, top: Attr, max_depth: int | None = None) -> Iterator[tuple[str, Attr]]:
    """``(path relative to top, attr)`` for everything below ``top``, in name order.

    Symlinks are reported but not followed, as ``find`` and ``grep -r`` do.
    """
    stack = [(iter(_children(backend, top.ino)), "", 1)]
    while stack:
        children, prefix, depth = stack[-1]
        item = next(children, None)
        if item is None:
            stack.pop()
            continue
        name, attr = item
        path = f"{prefix}{name}"
        yield path, attr
        if attr.is_dir and (max_depth is None or depth < max_depth):
            stack.append((iter(_children(backend, attr.ino)), f"{path}/", depth + 1))


def _children(backend: Backend, ino: int) -> list[tuple[str, Attr]]:
    found = [(name, attr) for name, attr, _ in backend.readdir(ino) if name not in (".", "..")]
    found.sort(key=lambda item: item[0])
    return found


@dataclass
class Match:
    line: int
    text: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    def to_dict(self, path: str, context: int) -> dict[str, object]:
        found: dict[str, object] = {"path": path, "line": self.line, "text": self.text}
        if context:
            found["before"] = self.before
            found["after"] = self.after
        return found


def _clip(text: str) -> str:
    return text if len(text) <= LINE_CLIP else text[:LINE_CLIP] + "…"


def text_blocks(handle: Handle) -> Iterator[str]:
    """The file's text in pieces that each end at a line end (the last may not).

    Stops at once, yielding nothing, for a binary file.
    """
    offset = 0
    rest = b""
    at_end = False
    while not at_end and (data := handle.read(offset, READ_BLOCK)):
        if offset == 0 and b"\0" in data[:BINARY_SNIFF]:
            return
        offset += len(data)
        at_end = len(data) < READ_BLOCK  # a short read is the end: spare one more call
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < 4 * READ_BLOCK:
            rest = data  # no line end yet; a bounded wait for one
            continue
        cut = cut or len(data)
        rest = data[cut:]
        yield data[:cut].decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")


def lines_of(block: str, *, keepends: bool = False) -> list[str]:
    """The lines of a text block, split at ``\\n`` only, as grep counts them
    (``str.splitlines`` would also split at form feeds and other separators)."""
    lines = block.split("\n")
    last = lines.pop()  # after the final line end: empty, or a line without one
    if keepends:
        lines = [line + "\n" for line in lines]
    return [*lines, last] if last else lines


def grep_file(
    handle: Handle, regex: re.Pattern[str], context: int, limit: int
) -> tuple[list[Match], bool]:
    """Up to ``limit`` matching lines with ``context`` lines around each, and
    whether more matches were left out."""
    matches: list[Match] = []
    before: deque[str] = deque(maxlen=context)
    waiting: list[Match] = []  # matches still collecting lines after them
    lineno = 0
    more = False
    for block in text_blocks(handle):
        lines = lines_of(block)
        if not waiting and not regex.search(block):
            lineno += len(lines)  # the common case: nothing here, skip line by line work
            before.extend(lines[-context:] if context else ())
            continue
        for text in lines:
            lineno += 1
            for match in waiting:
                match.after.append(_clip(text))
            waiting = [m for m in waiting if len(m.after) < context]
            if regex.search(text):
                if len(matches) >= limit:
                    more = True
                else:
                    match = Match(lineno, _clip(text), [_clip(t) for t in before])
                    matches.append(match)
                    if context:
                        waiting.append(match)
            if more and not waiting:
                return matches, True
            before.append(text)
    return matches, more
