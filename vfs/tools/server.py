"""``vfs mcp``: the file tools and the workspace files over the Model Context Protocol.

Built on the official ``mcp`` SDK's low-level server, so the tools' JSON
schemas are exactly those of :data:`vfs.tools.SPECS`. Every failure of a call
comes back as a tool result with ``isError`` set and a one-line message; the
server keeps serving.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from vfs.tools import search
from vfs.tools.errors import ToolError, from_os_error
from vfs.tools.files import FileTools
from vfs.tools.specs import SPECS

MAX_RESOURCES = 1000  # resources/list names at most this many files; the template reaches all
MAX_RESOURCE_BYTES = 16 * 1024 * 1024
RESOURCE_NOT_FOUND = -32002  # the protocol's code for resources/read of an unknown URI


def _tool_list(read_only: bool) -> list[types.Tool]:
    return [
        types.Tool(
            name=spec.name,
            description=spec.description
            + (" (refused: the workspace is read-only)" if read_only and spec.writes else ""),
            input_schema=spec.input_schema,
            annotations=types.ToolAnnotations(
                read_only_hint=not spec.writes,
                destructive_hint=spec.name in ("write", "rm", "mv"),
            ),
        )
        for spec in SPECS.values()
    ]


def _failure(code: str, message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{code}: {message}")],
        structured_content={"error": code, "message": message},
        is_error=True,
    )


class ToolServer:
    """An MCP server over one agent's :class:`FileTools`."""

    def __init__(self, tools: FileTools) -> None:
        self.tools = tools
        self.agent = tools.workspace.agent
        self.prefix = f"agentvfs://{self.agent}/"
        self.server: Server[Any] = Server(
            "agentvfs",
            instructions=f"Files of the agent workspace {self.agent!r}; '/' is its root.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
        )

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_tool_list(self.tools.read_only))

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            result = self.tools.call(params.name, dict(params.arguments or {}))
        except ToolError as exc:
            return _failure(exc.code, exc.message)
        except Exception as exc:  # a bug must not end the server: say it in one line
            print(f"vfs mcp: {params.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return _failure("internal_error", f"{type(exc).__name__}: {exc}")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(result, ensure_ascii=False))],
            structured_content=result,
        )

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        backend = self.tools.backend
        found: list[types.Resource] = []
        with backend.snapshot():
            root = backend.resolve("/")
            for relative, attr in search.walk(backend, root):
                if not attr.is_file:
                    continue
                if len(found) == MAX_RESOURCES:
                    break
                found.append(
                    types.Resource(
                        uri=self.prefix + relative,
                        name="/" + relative,
                        mime_type=mimetypes.guess_type(relative)[0] or "text/plain",
                        size=attr.size,
                    )
                )
        return types.ListResourcesResult(resources=found)

    async def _list_templates(self, ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=self.prefix + "{+path}",
            name="workspace file",
            description=f"Any file of the agent workspace {self.agent!r} by its path.",
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def _read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if not uri.startswith(self.prefix):
            message = f"{uri}: not a file of agent {self.agent} (expected {self.prefix}PATH)"
            raise MCPError(types.INVALID_PARAMS, message)
        path = "/" + uri[len(self.prefix) :]
        backend = self.tools.backend
        try:
            handle, attr = backend.open_path(path)
            with handle:
                if attr.size > MAX_RESOURCE_BYTES:
                    message = f"{path}: too large to read as a resource; use the read tool"
                    raise MCPError(types.INVALID_PARAMS, message)
                data = handle.read(0, attr.size)
        except OSError as exc:
            error = from_os_error(exc, path)
            code = RESOURCE_NOT_FOUND if error.code == "not_found" else types.INVALID_PARAMS
            raise MCPError(code, error.message) from None
        mime = mimetypes.guess_type(path)[0]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            blob = base64.b64encode(data).decode("ascii")
            contents: Any = types.BlobResourceContents(
                uri=uri, mime_type=mime or "application/octet-stream", blob=blob
            )
        else:
            contents = types.TextResourceContents(
                uri=uri, mime_type=mime or "text/plain", text=text
            )
        return types.ReadResourceResult(contents=[contents])

    async def run_stdio(self) -> None:
        async with stdio_server() as (read_stream, write_stream):
            await self.server.run(
                read_stream, write_stream, self.server.create_initialization_options()
            )


def serve_stdio(tools: FileTools) -> None:
    """Serve ``tools`` over stdin/stdout until the client closes the connection."""
    anyio.run(ToolServer(tools).run_stdio)
