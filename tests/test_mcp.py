"""`vfs mcp` driven by the MCP SDK's own client over a real stdio subprocess."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.helpers import require_mode, run_vfs
from vfs import Workspace
from vfs.state.registry import MODES
from vfs.tools import SPECS

VFS = str(Path(sys.executable).with_name("vfs"))


def serve(home: Path, *args: str, scenario: Callable[[ClientSession], Awaitable[None]]) -> None:
    """Start `vfs mcp ARGS` as a subprocess and run ``scenario`` against it."""

    async def run() -> None:
        params = StdioServerParameters(
            command=VFS, args=["--home", str(home), "mcp", *args], env=dict(os.environ)
        )
        with anyio.fail_after(120), open(os.devnull, "w") as quiet:
            async with (
                stdio_client(params, errlog=quiet) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                await scenario(session)

    anyio.run(run)


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    data = json.loads(result.content[0].text)
    assert data == result.structured_content
    return data  # type: ignore[no-any-return]


def test_tools_are_listed_with_the_library_schemas(home: Path) -> None:
    Workspace.create("alice", home).close()

    async def scenario(session: ClientSession) -> None:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == set(SPECS)
        for name, spec in SPECS.items():
            assert listed[name].input_schema == spec.input_schema
            assert listed[name].annotations.read_only_hint is (not spec.writes)

    serve(home, "alice", scenario=scenario)


@pytest.mark.parametrize("mode", MODES)
def test_every_tool_can_be_called(home: Path, tmp_path: Path, mode: str) -> None:
    require_mode(mode)
    workspace = tmp_path / "tree" if mode == "hybrid" else None
    if workspace is not None:
        workspace.mkdir()
    Workspace.create("alice", home, mode=mode, workspace=workspace).close()

    async def scenario(session: ClientSession) -> None:
        async def call(name: str, /, **arguments: Any) -> dict[str, Any]:
            return payload(await session.call_tool(name, arguments))

        assert (await call("write", path="src/a.py", content="x = 1\n"))["bytes_written"] == 6
        assert (await call("append", path="src/a.py", content="y = 2\n"))["size"] == 12
        assert (await call("edit", path="src/a.py", old_string="x = 1", new_string="x = 3"))[
            "replacements"
        ] == 1
        edits = [{"old_string": "x", "new_string": "a"}, {"old_string": "y", "new_string": "b"}]
        assert (await call("multi_edit", path="src/a.py", edits=edits))["edits"] == 2
        assert (await call("read", path="src/a.py"))["content"] == "a = 3\nb = 2\n"
        assert (await call("read", path="src/a.py", start_line=2))["content"] == "b = 2\n"
        assert (await call("mkdir", path="docs/notes"))["path"] == "/docs/notes"
        names = [e["name"] for e in (await call("ls", path="/"))["entries"]]
        assert names == ["docs", "src"]
        assert (await call("glob", pattern="**/*.py"))["paths"] == ["/src/a.py"]
        matches = (await call("grep", pattern=r"b = \d", context=1))["matches"]
        assert matches == [
            {"path": "/src/a.py", "line": 2, "text": "b = 2", "before": ["a = 3"], "after": []}
        ]
        assert (await call("stat", path="src/a.py"))["size"] == 12
        assert (await call("checkpoint", name="before-mv"))["name"] == "before-mv"
        await call("mv", source="src/a.py", destination="docs/a.py")
        changes = (await call("diff", checkpoint="before-mv"))["changes"]
        assert {(c["kind"], c["path"]) for c in changes} >= {("deleted", "/src/a.py")}
        assert (await call("rollback", name="before-mv"))["rolled_back_to"] == "before-mv"
        assert (await call("diff", checkpoint="before-mv"))["changes"] == []
        await call("mv", source="src/a.py", destination="docs/a.py")
        assert (await call("rm", path="docs", recursive=True))["removed"] == 3
        assert (await call("ls"))["entries"] == [
            {"name": "src", "type": "directory", "size": (await call("stat", path="src"))["size"]}
        ]

    serve(home, "alice", scenario=scenario)
    with Workspace.open("alice", home) as ws:
        assert ws.fs.ls("/", detail=False) == ["/src"]


def test_a_failing_call_is_a_tool_error_and_the_server_keeps_serving(home: Path) -> None:
    Workspace.create("alice", home).close()

    async def scenario(session: ClientSession) -> None:
        failures = [
            ("read", {"path": "missing.txt"}, "not_found"),
            ("read", {"path": "../escape"}, "permission_denied"),
            ("read", {"path": 7}, "invalid_argument"),
            ("grep", {"pattern": "("}, "invalid_argument"),
            ("edit", {"path": "missing", "old_string": "a", "new_string": "b"}, "not_found"),
            ("nonexistent_tool", {}, "unknown_tool"),
        ]
        for name, arguments, code in failures:
            result = await session.call_tool(name, arguments)
            assert result.is_error, (name, arguments)
            assert result.structured_content["error"] == code
            assert result.content[0].text.startswith(f"{code}: ")
            assert "\n" not in result.content[0].text
            assert "Traceback" not in result.content[0].text
        payload(await session.call_tool("write", {"path": "still.txt", "content": "alive"}))
        assert payload(await session.call_tool("read", {"path": "still.txt"}))["content"] == (
            "alive"
        )

    serve(home, "alice", scenario=scenario)


def test_read_only_server_refuses_writes_and_still_reads(home: Path) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/keep.txt", b"kept")

    async def scenario(session: ClientSession) -> None:
        for name, arguments in [
            ("write", {"path": "new.txt", "content": "x"}),
            ("edit", {"path": "keep.txt", "old_string": "kept", "new_string": "x"}),
            ("rm", {"path": "keep.txt"}),
            ("mkdir", {"path": "d"}),
        ]:
            result = await session.call_tool(name, arguments)
            assert result.is_error and result.structured_content["error"] == "read_only"
        assert payload(await session.call_tool("read", {"path": "keep.txt"}))["content"] == "kept"

    serve(home, "alice", "--read-only", scenario=scenario)
    with Workspace.open("alice", home) as ws:
        assert ws.fs.ls("/", detail=False) == ["/keep.txt"]
        assert ws.fs.cat("/keep.txt") == b"kept"


def test_files_are_resources_to_list_and_read(home: Path) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/notes/todo.md", "héllo".encode())
        ws.fs.pipe("/data.bin", b"\xff\x00\x01")

    async def scenario(session: ClientSession) -> None:
        listed = {r.uri: r for r in (await session.list_resources()).resources}
        assert set(map(str, listed)) == {
            "agentvfs://alice/data.bin",
            "agentvfs://alice/notes/todo.md",
        }
        text = (await session.read_resource("agentvfs://alice/notes/todo.md")).contents[0]
        assert text.text == "héllo"
        blob = (await session.read_resource("agentvfs://alice/data.bin")).contents[0]
        assert base64.b64decode(blob.blob) == b"\xff\x00\x01"
        templates = (await session.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["agentvfs://alice/{+path}"]
        for uri in ["agentvfs://alice/missing", "agentvfs://bob/notes/todo.md"]:
            with pytest.raises(MCPError):
                await session.read_resource(uri)
        assert (await session.read_resource("agentvfs://alice/notes/todo.md")).contents

    serve(home, "alice", scenario=scenario)


def test_unknown_agent_is_a_one_line_error(home: Path) -> None:
    done = run_vfs("--home", str(home), "mcp", "ghost")
    assert done.returncode == 1
    assert "ghost" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
