"""The file tools (vfs.tools) in every mode: results, errors, confinement, read-only."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import disk_tree, require_mode
from vfs import Workspace
from vfs.state.registry import MODES
from vfs.tools import SPECS, FileTools, ToolError
from vfs.tools.search import READ_BLOCK


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    require_mode(request.param)
    return str(request.param)


@pytest.fixture
def ws(mode: str, make_workspace: Callable[..., Workspace], tmp_path: Path) -> Workspace:
    if mode == "hybrid":
        (tmp_path / "lower").mkdir()
        return make_workspace(mode, workspace=tmp_path / "lower")
    return make_workspace(mode)


@pytest.fixture
def tools(ws: Workspace) -> FileTools:
    return FileTools(ws)


def fails(tools: FileTools, name: str, code: str, /, **arguments: object) -> str:
    with pytest.raises(ToolError) as caught:
        tools.call(name, arguments)
    assert caught.value.code == code, caught.value.message
    assert "\n" not in caught.value.message
    return caught.value.message


def test_every_tool_has_an_object_schema_and_a_description() -> None:
    assert set(SPECS) == {
        "read", "write", "edit", "multi_edit", "append", "ls", "glob", "grep",
        "mv", "rm", "mkdir", "stat", "checkpoint", "rollback", "diff",
    }  # fmt: skip
    for spec in SPECS.values():
        assert spec.description
        assert spec.input_schema["type"] == "object"
        assert set(spec.input_schema["required"]) <= set(spec.input_schema["properties"])
        json.dumps(spec.input_schema)


def test_read_byte_and_line_ranges_with_a_truncation_marker(tools: FileTools) -> None:
    lines = "".join(f"line {n}\n" for n in range(1, 101))
    tools.call("write", {"path": "notes/a.txt", "content": lines})
    whole = tools.call("read", {"path": "/notes/a.txt"})
    assert whole["content"] == lines and not whole["truncated"]
    part = tools.call("read", {"path": "notes/a.txt", "offset": 7, "length": 6})
    assert part["content"] == "line 2" and not part["truncated"]
    capped = tools.call("read", {"path": "notes/a.txt", "max_bytes": 10})
    assert capped["content"] == lines[:10]
    assert capped["truncated"] and capped["next_offset"] == 10
    assert "offset=10" in capped["note"]
    ranged = tools.call("read", {"path": "notes/a.txt", "start_line": 3, "end_line": 5})
    assert ranged["content"] == "line 3\nline 4\nline 5\n"
    assert (ranged["start_line"], ranged["end_line"]) == (3, 5)
    short = tools.call("read", {"path": "notes/a.txt", "start_line": 98, "max_bytes": 8})
    assert short["content"] == "line 98\n" and short["next_line"] == 99
    assert "start_line=99" in short["note"]
    json.dumps([whole, part, capped, ranged, short])


def test_line_numbers_stay_right_across_read_blocks(tools: FileTools, ws: Workspace) -> None:
    filler = "x" * 99 + "\n"
    count = READ_BLOCK // len(filler) * 3
    ws.fs.pipe("/big.txt", (filler * count + "needle\n" + filler).encode())
    found = tools.call("grep", {"pattern": "needle", "context": 1})
    assert found["matches"] == [
        {"path": "/big.txt", "line": count + 1, "text": "needle", "before": [filler[:-1]],
         "after": [filler[:-1]]}
    ]  # fmt: skip
    tail = tools.call("read", {"path": "big.txt", "start_line": count + 1, "end_line": count + 1})
    assert tail["content"] == "needle\n"


def test_write_append_mkdir_stat_and_ls(tools: FileTools, ws: Workspace) -> None:
    assert tools.call("write", {"path": "a/b/c.txt", "content": "héllo"})["bytes_written"] == 6
    assert ws.fs.cat("/a/b/c.txt") == "héllo".encode()
    assert tools.call("append", {"path": "a/b/c.txt", "content": "!"})["size"] == 7
    assert tools.call("append", {"path": "a/new.txt", "content": "x"})["size"] == 1
    assert tools.call("mkdir", {"path": "a/d/e"}) == {"path": "/a/d/e"}
    assert tools.call("mkdir", {"path": "a/d/e"}) == {"path": "/a/d/e"}
    listing = tools.call("ls", {"path": "/a"})
    assert listing["entries"] == [
        {"name": "b", "type": "directory", "size": listing["entries"][0]["size"]},
        {"name": "d", "type": "directory", "size": listing["entries"][1]["size"]},
        {"name": "new.txt", "type": "file", "size": 1},
    ]
    info = tools.call("stat", {"path": "a/b/c.txt"})
    assert (info["type"], info["size"], info["mode"]) == ("file", 7, "0o644")
    fails(tools, "ls", "not_a_directory", path="a/new.txt")
    fails(tools, "read", "is_a_directory", path="a")
    fails(tools, "stat", "not_found", path="nope")


def test_edit_replaces_a_unique_match_and_refuses_zero_or_several(tools: FileTools) -> None:
    tools.call("write", {"path": "f.py", "content": "a = 1\nb = 1\n"})
    assert tools.call("edit", {"path": "f.py", "old_string": "a = 1", "new_string": "a = 2"}) == {
        "path": "/f.py",
        "replacements": 1,
    }
    message = fails(tools, "edit", "not_unique", path="f.py", old_string=" = ", new_string="=")
    assert "2 times" in message
    message = fails(tools, "edit", "no_match", path="f.py", old_string="zzz", new_string="y")
    assert "not found" in message
    fails(tools, "edit", "invalid_argument", path="f.py", old_string="", new_string="y")
    done = tools.call(
        "edit", {"path": "f.py", "old_string": " = ", "new_string": "=", "replace_all": True}
    )
    assert done["replacements"] == 2
    assert tools.call("read", {"path": "f.py"})["content"] == "a=2\nb=1\n"


def test_multi_edit_is_all_or_nothing(tools: FileTools) -> None:
    tools.call("write", {"path": "f.txt", "content": "one two three\n"})
    message = fails(
        tools,
        "multi_edit",
        "no_match",
        path="f.txt",
        edits=[
            {"old_string": "one", "new_string": "1"},
            {"old_string": "missing", "new_string": "x"},
        ],
    )
    assert "edit 2" in message
    assert tools.call("read", {"path": "f.txt"})["content"] == "one two three\n"
    done = tools.call(
        "multi_edit",
        {
            "path": "f.txt",
            "edits": [
                {"old_string": "one", "new_string": "1"},
                {"old_string": "1 two", "new_string": "1 2"},  # sees the edit before it
            ],
        },
    )
    assert done == {"path": "/f.txt", "edits": 2, "replacements": 2}
    assert tools.call("read", {"path": "f.txt"})["content"] == "1 2 three\n"


def test_edit_refuses_a_file_that_is_not_text(tools: FileTools, ws: Workspace) -> None:
    ws.fs.pipe("/bin.dat", b"\xff\xfe\x00abc")
    fails(tools, "edit", "not_text", path="bin.dat", old_string="abc", new_string="x")
    assert ws.fs.cat("/bin.dat") == b"\xff\xfe\x00abc"


def test_glob_matches_names_and_directories(tools: FileTools) -> None:
    for path in ["src/a.py", "src/pkg/b.py", "src/pkg/c.txt", "top.py", ".hidden/d.py"]:
        tools.call("write", {"path": path, "content": "x"})
    assert tools.call("glob", {"pattern": "**/*.py"})["paths"] == [
        "/.hidden/d.py", "/src/a.py", "/src/pkg/b.py", "/top.py",
    ]  # fmt: skip
    assert tools.call("glob", {"pattern": "*.py"})["paths"] == ["/top.py"]
    assert tools.call("glob", {"pattern": "src/*/[bc].*"})["paths"] == [
        "/src/pkg/b.py",
        "/src/pkg/c.txt",
    ]
    assert tools.call("glob", {"pattern": "*.py", "path": "/src/pkg"})["paths"] == ["/src/pkg/b.py"]
    capped = tools.call("glob", {"pattern": "**/*", "limit": 2})
    assert len(capped["paths"]) == 2 and capped["truncated"]
    assert tools.call("glob", {"pattern": "nowhere/*.py"})["paths"] == []


def test_grep_filters_paths_caps_results_and_reports_files_or_counts(tools: FileTools) -> None:
    tools.call("write", {"path": "src/a.py", "content": "TODO one\nok\nTODO two\n"})
    tools.call("write", {"path": "src/b.txt", "content": "todo three\n"})
    tools.call("write", {"path": "docs/c.py", "content": "nothing\n"})
    found = tools.call("grep", {"pattern": "TODO", "glob": "*.py"})
    assert [(m["path"], m["line"], m["text"]) for m in found["matches"]] == [
        ("/src/a.py", 1, "TODO one"),
        ("/src/a.py", 3, "TODO two"),
    ]
    loose = tools.call("grep", {"pattern": "todo", "ignore_case": True, "path": "/src"})
    assert len(loose["matches"]) == 3 and not loose["truncated"]
    capped = tools.call("grep", {"pattern": "todo", "ignore_case": True, "limit": 2})
    assert len(capped["matches"]) == 2 and capped["truncated"]
    files = tools.call("grep", {"pattern": "o", "output": "files"})
    assert files["files"] == [{"path": "/docs/c.py"}, {"path": "/src/a.py"}, {"path": "/src/b.txt"}]
    counts = tools.call("grep", {"pattern": "TODO", "output": "count"})
    assert counts["counts"] == [{"path": "/src/a.py", "count": 2}]
    single = tools.call("grep", {"pattern": "ok", "path": "src/a.py", "context": 1})
    assert single["matches"] == [
        {"path": "/src/a.py", "line": 2, "text": "ok", "before": ["TODO one"],
         "after": ["TODO two"]}
    ]  # fmt: skip
    fails(tools, "grep", "invalid_argument", pattern="(unclosed")


def test_special_files_in_a_disk_tree_are_refused_not_read(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    require_mode("disk")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    (tree / "ok.txt").write_text("pipe ok\n")
    tools = FileTools(make_workspace("disk", workspace=tree))
    assert "not a regular file" in fails(tools, "read", "not_a_file", path="pipe")
    fails(tools, "edit", "not_a_file", path="pipe", old_string="a", new_string="b")
    assert [m["path"] for m in tools.call("grep", {"pattern": "pipe"})["matches"]] == ["/ok.txt"]
    assert tools.call("stat", {"path": "pipe"})["type"] == "other"


def test_grep_skips_binary_files(tools: FileTools, ws: Workspace) -> None:
    ws.fs.pipe("/blob.bin", b"\x00\x01needle")
    ws.fs.pipe("/text.txt", b"needle")
    assert [m["path"] for m in tools.call("grep", {"pattern": "needle"})["matches"]] == [
        "/text.txt"
    ]


def test_mv_and_rm(tools: FileTools) -> None:
    tools.call("write", {"path": "a/x.txt", "content": "x"})
    tools.call("write", {"path": "b.txt", "content": "b"})
    assert tools.call("mv", {"source": "a/x.txt", "destination": "c/y.txt"})["destination"] == (
        "/c/y.txt"
    )
    fails(tools, "mv", "already_exists", source="c/y.txt", destination="b.txt")
    tools.call("mv", {"source": "c/y.txt", "destination": "b.txt", "overwrite": True})
    assert tools.call("read", {"path": "b.txt"})["content"] == "x"
    fails(tools, "mv", "not_found", source="gone", destination="elsewhere")
    fails(tools, "mv", "invalid_argument", source="c", destination="c/inner")
    tools.call("write", {"path": "tree/d/e.txt", "content": "e"})
    fails(tools, "rm", "directory_not_empty", path="tree")
    assert tools.call("rm", {"path": "tree", "recursive": True}) == {"path": "/tree", "removed": 3}
    assert tools.call("rm", {"path": "b.txt"}) == {"path": "/b.txt", "removed": 1}
    fails(tools, "rm", "invalid_argument", path="/")
    fails(tools, "rm", "not_found", path="b.txt")


def test_paths_cannot_leave_the_workspace(tools: FileTools, ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    fails(tools, "read", "permission_denied", path="../outside.txt")
    fails(tools, "write", "permission_denied", path="a/../../outside.txt", content="x")
    ws.fs.symlink(str(outside), "/abs-link")
    ws.fs.symlink("../../../../outside.txt", "/rel-link")
    for link in ("abs-link", "rel-link"):
        fails(tools, "read", "permission_denied", path=link)
        fails(tools, "write", "permission_denied", path=link, content="x")
        assert tools.call("stat", {"path": link})["type"] == "symlink"
    assert outside.read_text() == "secret"
    # "/" is the workspace root, never the host's.
    fails(tools, "read", "not_found", path=str(outside))


def test_a_read_only_workspace_refuses_every_writing_tool(
    mode: str, ws: Workspace, tmp_path: Path
) -> None:
    FileTools(ws).call("write", {"path": "keep.txt", "content": "kept"})
    writable = {
        "write": {"path": "keep.txt", "content": "x"},
        "edit": {"path": "keep.txt", "old_string": "kept", "new_string": "x"},
        "multi_edit": {"path": "keep.txt", "edits": [{"old_string": "k", "new_string": "x"}]},
        "append": {"path": "keep.txt", "content": "x"},
        "mv": {"source": "keep.txt", "destination": "moved.txt"},
        "rm": {"path": "keep.txt"},
        "mkdir": {"path": "newdir"},
        "checkpoint": {"name": "c"},
        "rollback": {"name": "c"},
    }
    assert set(writable) == {name for name, spec in SPECS.items() if spec.writes}
    read_only = Workspace.open(ws.agent, ws.home, read_only=True)
    try:
        for tools in (FileTools(read_only), FileTools(ws, read_only=True)):
            for name, arguments in writable.items():
                assert "read-only" in fails(tools, name, "read_only", **arguments)
            assert tools.call("read", {"path": "keep.txt"})["content"] == "kept"
            assert tools.call("grep", {"pattern": "kept"})["matches"]
    finally:
        read_only.close()
    assert sorted(
        e["name"] for e in FileTools(ws).call("ls", {})["entries"] if e["name"] != "docs"
    ) == ["keep.txt"]


def test_bad_calls_are_tool_errors(tools: FileTools) -> None:
    fails(tools, "nope", "unknown_tool")
    fails(tools, "read", "invalid_argument")
    fails(tools, "read", "invalid_argument", path=3)
    fails(tools, "read", "invalid_argument", path="a", offset=True)
    fails(tools, "read", "invalid_argument", path="a", offset=-1)
    fails(tools, "read", "invalid_argument", path="a", colour="red")
    fails(tools, "read", "invalid_argument", path="a", offset=0, start_line=1)
    fails(tools, "grep", "invalid_argument", pattern="x", output="lines")
    fails(tools, "multi_edit", "invalid_argument", path="a", edits=[])
    fails(tools, "read", "invalid_argument", path="bad\0name")
    fails(tools, "read", "invalid_argument", path=None)


def test_null_optional_arguments_count_as_left_out(tools: FileTools) -> None:
    tools.call("write", {"path": "a.txt", "content": "abc"})
    assert (
        tools.call("read", {"path": "a.txt", "offset": None, "start_line": None})["content"]
        == "abc"
    )


def test_hybrid_tools_change_the_overlay_not_the_lower_tree(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    require_mode("hybrid")
    lower = tmp_path / "lower"
    (lower / "src").mkdir(parents=True)
    (lower / "src" / "main.py").write_text("print('lower')\n")
    before = disk_tree(lower)
    tools = FileTools(make_workspace("hybrid", workspace=lower))
    assert tools.call("grep", {"pattern": "lower"})["matches"][0]["path"] == "/src/main.py"
    tools.call("edit", {"path": "src/main.py", "old_string": "lower", "new_string": "upper"})
    tools.call("write", {"path": "src/new.py", "content": "new"})
    tools.call("rm", {"path": "src/main.py"})
    assert tools.call("glob", {"pattern": "**/*.py"})["paths"] == ["/src/new.py"]
    assert disk_tree(lower) == before
    assert os.path.exists(lower / "src" / "main.py")


def test_read_and_grep_count_lines_alike(tools: FileTools, ws: Workspace) -> None:
    # Only "\n" ends a line, as for grep: not "\r", form feeds or other separators.
    ws.fs.pipe("/odd.txt", "one\r\ntwo\x0cstill two\nthree\u2028same\nfour".encode())
    found = tools.call("grep", {"pattern": "three|four"})
    assert [(m["line"], m["text"]) for m in found["matches"]] == [
        (3, "three\u2028same"),
        (4, "four"),
    ]
    second = tools.call("read", {"path": "odd.txt", "start_line": 2, "end_line": 2})
    assert second["content"] == "two\x0cstill two\n"
    last = tools.call("read", {"path": "odd.txt", "start_line": 4})
    assert last["content"] == "four" and last["end_line"] == 4


@pytest.mark.parametrize("transactional_mode", ["sqlite", "hybrid"])
def test_concurrent_edits_lose_no_update_where_the_engine_has_transactions(
    transactional_mode: str, make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    require_mode(transactional_mode)
    lower = tmp_path / "lower"
    lower.mkdir()
    ws = make_workspace(
        transactional_mode, workspace=lower if transactional_mode == "hybrid" else None
    )
    FileTools(ws).call("write", {"path": "log.txt", "content": "<END>"})
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        tools = FileTools(ws)  # the same workspace: one database connection per thread
        try:
            for i in range(25):
                line = f"{number}-{i}\n<END>"
                tools.call("edit", {"path": "log.txt", "old_string": "<END>", "new_string": line})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    lines = FileTools(ws).call("read", {"path": "log.txt"})["content"].splitlines()
    assert lines[-1] == "<END>"
    assert sorted(lines[:-1]) == sorted(f"{n}-{i}" for n in range(4) for i in range(25))


def test_grep_and_line_reads_stream_a_large_file(tools: FileTools, ws: Workspace) -> None:
    line = b"x" * 1023 + b"\n"
    with ws.fs.open("/large.log", "wb") as f:
        for _ in range(48):
            f.write(line * 1024)  # 1 MiB
        f.write(b"the needle\n")
    size = ws.fs.size("/large.log")
    tracemalloc.start()
    try:
        found = tools.call("grep", {"pattern": "needle", "output": "count"})
        tail = tools.call("read", {"path": "large.log", "start_line": 48 * 1024 + 1})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found["counts"] == [{"path": "/large.log", "count": 1}]
    assert tail["content"] == "the needle\n"
    assert peak < 12 * (1 << 20), f"peak {peak} bytes for a {size}-byte file"
