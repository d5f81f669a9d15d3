"""An agent's database and workspace are never silently replaced or shared."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner, Result

from tests.helpers import require_mode
from vfs import Workspace
from vfs.cli import main
from vfs.state.registry import MODES, Registry


def vfs(home: Path, *args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["--home", str(home), *args], input=input)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


DAMAGE = {
    "missing": (None, "database file is missing"),
    "empty": (b"", "database file is empty"),
    "garbage": (b"not a database at all " * 300, "not a database"),
}


def damage(db_path: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    content = DAMAGE[how][0]
    if content is None:
        db_path.unlink()
    else:
        db_path.write_bytes(content)


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", MODES)
def test_damaged_agent_database_is_an_error_and_left_alone(
    home: Path, tmp_path: Path, mode: str, how: str
) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", home, mode=mode, workspace=tree)
    ws.fs.pipe("/kept.txt", b"data that must not vanish")
    db_path = ws.record.db_path
    ws.close()
    damage(db_path, how)
    before = db_path.read_bytes() if db_path.exists() else None
    message = DAMAGE[how][1]
    local = tmp_path / "new.txt"
    local.write_bytes(b"new")

    for args in (["ls", "alice:/"], ["put", str(local), "alice:/new.txt"], ["info", "alice"]):
        assert_one_line_error(vfs(home, *args), str(db_path), message)
    with pytest.raises(OSError, match=message):
        Workspace.open("alice", home)
    with pytest.raises(OSError, match=message):
        fsspec.filesystem("agentvfs", agent="alice", home=str(home), skip_instance_cache=True)

    assert (db_path.read_bytes() if db_path.exists() else None) == before
    assert not Path(f"{db_path}-wal").exists()


def test_corrupt_state_database_is_one_line_and_left_alone(home: Path) -> None:
    Workspace.create("alice", home).close()
    state = home / "state.sqlite"
    damage(state, "garbage")
    before = state.read_bytes()
    for args in (["ls", "alice:/"], ["agents"], ["init", "bob"]):
        assert_one_line_error(vfs(home, *args), str(state), "not a database")
    with pytest.raises(OSError, match="not a database"):
        Workspace.open("alice", home)
    assert state.read_bytes() == before


def test_creating_an_agent_creates_its_database(home: Path) -> None:
    assert vfs(home, "init", "alice").exit_code == 0
    assert (home / "agents" / "alice" / "agent.sqlite").stat().st_size > 0


@pytest.mark.parametrize("mode", MODES)
def test_workspace_may_not_overlap_the_home_or_another_agent(
    home: Path, tmp_path: Path, mode: str
) -> None:
    require_mode(mode)
    bob_tree = tmp_path / "bob-tree"
    (bob_tree / "sub").mkdir(parents=True)
    Workspace.create("alice", home).close()
    Workspace.create("bob", home, mode="disk", workspace=bob_tree).close()
    alice_db = home / "agents" / "alice" / "agent.sqlite"
    alice_bytes = alice_db.read_bytes()
    refused = {
        home: "workspace is the agentvfs home",
        home / "agents" / "alice": "workspace is inside the agentvfs home",
        home / "agents": "workspace is inside the agentvfs home",
        tmp_path: "workspace contains the agentvfs home",
        bob_tree: "workspace is agent bob's workspace",
        bob_tree / "sub": "workspace is inside agent bob's workspace",
    }
    for workspace, message in refused.items():
        result = vfs(home, "init", "mallory", "--mode", mode, "--workspace", str(workspace))
        assert_one_line_error(result, message)
        with pytest.raises(PermissionError, match=message):
            Workspace.create("mallory", home, mode=mode, workspace=workspace)
        with pytest.raises(PermissionError, match=message):
            Workspace.open("mallory", home, create=True, mode=mode, workspace=workspace)
    assert [r.id for r in Registry(home).list()] == ["alice", "bob"]
    assert not (home / "agents" / "mallory" / "agent.sqlite").exists()
    assert alice_db.read_bytes() == alice_bytes

    beside = tmp_path / "beside"
    beside.mkdir()
    assert vfs(home, "init", "carol", "--mode", mode, "--workspace", str(beside)).exit_code == 0
