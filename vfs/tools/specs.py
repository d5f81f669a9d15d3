"""The JSON schema of every file tool's input, and the check of a call against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vfs.tools.errors import ToolError

DEFAULT_READ_BYTES = 64 * 1024
MAX_READ_BYTES = 1024 * 1024
DEFAULT_RESULTS = 200
MAX_RESULTS = 10_000


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does (for a model), its input schema, and
    whether it changes the workspace (a read-only workspace refuses those)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    writes: bool


def _path(what: str = "A workspace path; '/' is the workspace root.") -> dict[str, Any]:
    return {"type": "string", "description": what}


def _schema(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_INT = {"type": "integer", "minimum": 0}
_EDIT = _schema(
    ["old_string", "new_string"],
    old_string={"type": "string", "description": "Exact text to find; must occur once."},
    new_string={"type": "string", "description": "Text to put in its place."},
    replace_all={"type": "boolean", "description": "Replace every occurrence instead."},
)

SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec(
            "read",
            "Read a file as UTF-8 text: a byte range (offset, length) or a line range "
            "(start_line, end_line, 1-based and inclusive). At most max_bytes are returned; "
            "a longer answer has truncated=true and says where to continue.",
            _schema(
                ["path"],
                path=_path(),
                offset={**_INT, "description": "First byte to read."},
                length={**_INT, "description": "Bytes to read."},
                start_line={"type": "integer", "minimum": 1, "description": "First line."},
                end_line={"type": "integer", "minimum": 1, "description": "Last line."},
                max_bytes={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_READ_BYTES,
                    "description": f"Size cap (default {DEFAULT_READ_BYTES}).",
                },
            ),
            writes=False,
        ),
        ToolSpec(
            "write",
            "Create or replace a file with the given text; missing parent directories are created.",
            _schema(["path", "content"], path=_path(), content={"type": "string"}),
            writes=True,
        ),
        ToolSpec(
            "edit",
            "Replace old_string with new_string in a file. old_string must occur exactly "
            "once unless replace_all is true; zero or several matches are an error.",
            _schema(
                ["path", "old_string", "new_string"],
                path=_path(),
                **_EDIT["properties"],
            ),
            writes=True,
        ),
        ToolSpec(
            "multi_edit",
            "Apply several edits to one file in order, all or nothing: if any edit "
            "fails, the file is left unchanged.",
            _schema(
                ["path", "edits"],
                path=_path(),
                edits={"type": "array", "items": _EDIT, "minItems": 1},
            ),
            writes=True,
        ),
        ToolSpec(
            "append",
            "Append text to the end of a file, creating it if it does not exist.",
            _schema(["path", "content"], path=_path(), content={"type": "string"}),
            writes=True,
        ),
        ToolSpec(
            "ls",
            "List a directory: name, type and size of each entry.",
            _schema(
                [],
                path=_path("A directory (default '/')."),
                limit={"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
            ),
            writes=False,
        ),
        ToolSpec(
            "glob",
            "Find paths matching a glob: '*', '?' and '[...]' within a name, '**' for "
            "any number of directories (e.g. 'src/**/*.py').",
            _schema(
                ["pattern"],
                pattern={"type": "string"},
                path=_path("Directory the pattern is relative to (default '/')."),
                limit={"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
            ),
            writes=False,
        ),
        ToolSpec(
            "grep",
            "Search file contents for a regular expression (Python syntax). Returns "
            "matching lines with line numbers, or only file names, or counts.",
            _schema(
                ["pattern"],
                pattern={"type": "string"},
                path=_path("File or directory to search (default '/')."),
                glob={
                    "type": "string",
                    "description": "Only files whose path matches this glob ('*.py': any "
                    "directory; with a '/', relative to path).",
                },
                ignore_case={"type": "boolean"},
                context={**_INT, "maximum": 50, "description": "Lines before and after."},
                output={"type": "string", "enum": ["content", "files", "count"]},
                limit={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_RESULTS,
                    "description": f"Result cap (default {DEFAULT_RESULTS}).",
                },
            ),
            writes=False,
        ),
        ToolSpec(
            "mv",
            "Move or rename a file or directory. An existing destination is an error "
            "unless overwrite is true.",
            _schema(
                ["source", "destination"],
                source=_path(),
                destination=_path(),
                overwrite={"type": "boolean"},
            ),
            writes=True,
        ),
        ToolSpec(
            "rm",
            "Remove a file, or a directory (recursive=true for one that is not empty).",
            _schema(["path"], path=_path(), recursive={"type": "boolean"}),
            writes=True,
        ),
        ToolSpec(
            "mkdir",
            "Create a directory and any missing parents; an existing directory is fine.",
            _schema(["path"], path=_path()),
            writes=True,
        ),
        ToolSpec(
            "checkpoint",
            "Save the workspace's files as a named checkpoint, to roll back to or diff "
            "against later. Without a name one is made up; the answer gives it.",
            _schema(
                [],
                name={"type": "string", "description": "Letters, digits, '_', '.', '-'."},
                message={"type": "string", "description": "What the checkpoint is before."},
            ),
            writes=True,
        ),
        ToolSpec(
            "rollback",
            "Put the workspace's files back exactly as they were at a checkpoint, all or "
            "nothing. Files made since are removed. The checkpoint is kept.",
            _schema(["name"], name={"type": "string", "description": "The checkpoint."}),
            writes=True,
        ),
        ToolSpec(
            "diff",
            "List the paths added, modified and deleted since a checkpoint (up to another "
            "checkpoint `to`, or up to now).",
            _schema(
                ["checkpoint"],
                checkpoint={"type": "string", "description": "The checkpoint to compare from."},
                to={"type": "string", "description": "A later checkpoint (default: now)."},
            ),
            writes=False,
        ),
        ToolSpec(
            "stat",
            "Type, size, permissions and modification time of a path (a symlink is "
            "described, not followed).",
            _schema(["path"], path=_path()),
            writes=False,
        ),
    ]
}

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def check_arguments(schema: dict[str, Any], value: Any, where: str = "arguments") -> None:
    """Raise ``ToolError`` unless ``value`` fits ``schema`` (the subset used above)."""
    kind = schema.get("type")
    expected = _TYPES.get(kind or "")
    # bool is an int in Python; JSON keeps them apart.
    if expected is not None and (
        not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool))
    ):
        raise ToolError(
            "invalid_argument",
            f"{where} must be a{'n' * (kind in ('array', 'integer', 'object'))} {kind}",
        )
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise ToolError("invalid_argument", f"{where}: missing required '{name}'")
        for name, item in value.items():
            if name not in properties:
                raise ToolError("invalid_argument", f"{where}: unknown argument '{name}'")
            check_arguments(properties[name], item, name)
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise ToolError("invalid_argument", f"{where} must not be empty")
        for index, item in enumerate(value):
            check_arguments(schema["items"], item, f"{where}[{index}]")
    elif kind == "integer":
        if "minimum" in schema and value < schema["minimum"]:
            raise ToolError("invalid_argument", f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ToolError("invalid_argument", f"{where} must be at most {schema['maximum']}")
    elif kind == "string" and "enum" in schema and value not in schema["enum"]:
        raise ToolError("invalid_argument", f"{where} must be one of {', '.join(schema['enum'])}")
