"""The agent and file commands of the ``vfs`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import require_mode
from vfs.cli import main
from vfs.state.registry import MODES


@pytest.fixture
def run(home: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: bytes | None = None, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(main, ["--home", str(home), *args], input=input)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.mark.parametrize("mode", MODES)
def test_file_commands_round_trip(run, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    require_mode(mode)
    workspace = tmp_path / "tree"
    workspace.mkdir()
    run("init", "alice", "--mode", mode, "--workspace", str(workspace))
    local = tmp_path / "local.txt"
    local.write_text("from the host")
    run("put", str(local), "alice:/docs/a.txt")
    run("put", "-", "agentvfs://alice/docs/b.txt", input=b"from stdin")
    assert run("cat", "alice:/docs/a.txt").output == "from the host"
    assert run("cat", "agentvfs://alice/docs/b.txt").output == "from stdin"
    run("mkdir", "-p", "alice:/docs/sub/deeper")
    run("cp", "alice:/docs/a.txt", "alice:/docs/sub/c.txt")
    run("mv", "alice:/docs/b.txt", "alice:/docs/sub/deeper/b.txt")
    assert run("ls", "alice:/docs").output.split() == ["a.txt", "sub/"]
    assert run("tree", "alice:/").output.splitlines() == [
        "/",
        "    docs/",
        "        a.txt",
        "        sub/",
        "            c.txt",
        "            deeper/",
        "                b.txt",
    ]
    found = json.loads(run("tree", "--json", "alice:/docs").output)
    assert "/docs/sub/deeper/b.txt" in found
    stat = json.loads(run("stat", "--json", "alice:/docs/a.txt").output)
    assert stat["size"] == len("from the host") and stat["type"] == "file"
    out = tmp_path / "out.txt"
    run("get", "alice:/docs/sub/c.txt", str(out))
    assert out.read_text() == "from the host"
    run("rm", "-r", "alice:/docs/sub")
    assert run("ls", "--json", "alice:/docs").output.count('"name"') == 1
    info = json.loads(run("info", "--json", "alice").output)
    assert info["mode"] == mode
    assert [a["id"] for a in json.loads(run("agents", "--json").output)] == ["alice"]


def test_cp_between_agents_copies_content(run) -> None:  # type: ignore[no-untyped-def]
    run("init", "alice")
    run("init", "bob")
    run("put", "-", "alice:/x/y.txt", input=b"shared")
    run("cp", "-r", "alice:/x", "bob:/copied")
    assert run("cat", "bob:/copied/y.txt").output == "shared"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cat", "alice:/missing"], "No such file"),
        (["cat", "b!d:/x"], "invalid agent id"),
        (["cat", "ghost:/x"], "no such agent: ghost"),
        (["cat", "alice:/../../etc/passwd"], "'..' is not allowed"),
        (["rm", "alice:/dir"], "Is a directory"),
        (["init", "alice"], "agent already exists"),
        (["mkdir", "alice:/dir"], "File exists"),
        (["cat", "alice:/dir"], "Is a directory"),
    ],
)
def test_errors_are_one_line_and_exit_nonzero(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    run("init", "alice")
    run("mkdir", "alice:/dir")
    result = run(*args, ok=False)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_console_script_is_installed_and_reports_errors_without_traceback(home: Path) -> None:
    script = Path(sys.executable).with_name("vfs")
    assert script.is_file(), "the vfs console script is not installed next to the interpreter"
    result = subprocess.run(
        [str(script), "--home", str(home), "cat", "nobody:/x"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: no such agent: nobody"
