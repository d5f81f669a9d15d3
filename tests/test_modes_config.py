"""Mode settings: config.toml, AGENT_VFS_MODE, their precedence, and ``vfs mode``."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from vfs import Workspace
from vfs.cli import main
from vfs.settings.config import MODE_ENV, ModeMismatch, config_path, requested_mode
from vfs.state.registry import MODES, Registry


def write_config(home, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config_path(home).write_text(text)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_new_agents_take_the_mode_of_their_section_then_the_defaults(home):
    write_config(home, '[defaults]\nmode = "disk"\n\n[agents.bob]\nmode = "hybrid"\n')
    with Workspace.open("alice", home, create=True) as ws:
        assert ws.mode == "disk"
    with Workspace.open("bob", home, create=True) as ws:
        assert ws.mode == "hybrid"


def test_the_environment_overrides_the_settings_file(home, monkeypatch):
    write_config(home, '[agents.alice]\nmode = "disk"\n')
    monkeypatch.setenv(MODE_ENV, "hybrid")
    assert requested_mode("alice", home).source == MODE_ENV
    with Workspace.open("alice", home, create=True) as ws:
        assert ws.mode == "hybrid"


def test_an_explicit_mode_argument_overrides_the_environment(home, monkeypatch):
    monkeypatch.setenv(MODE_ENV, "hybrid")
    with Workspace.open("alice", home, create=True, mode="disk") as ws:
        assert ws.mode == "disk"


def test_a_setting_that_differs_from_the_data_is_an_error_not_a_silent_move(home, monkeypatch):
    Workspace.create("alice", home, mode="sqlite").close()
    monkeypatch.setenv(MODE_ENV, "disk")
    with pytest.raises(ModeMismatch, match="vfs mode alice --apply"):
        Workspace.open("alice", home)
    assert Registry(home).get("alice").mode == "sqlite"
    code, output = run("ls", "alice:/")
    assert code == 1 and "asks for disk mode" in output


def test_vfs_mode_apply_moves_the_data_to_the_mode_the_settings_ask_for(home):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("kept.txt", b"kept")
    write_config(home, '[agents.alice]\nmode = "disk"\n')
    code, output = run("mode", "alice")
    assert code == 0 and output.startswith("sqlite")
    code, output = run("mode", "alice", "--apply")
    assert code == 0, output
    assert "sqlite -> disk" in output
    with Workspace.open("alice", home) as ws:
        assert ws.mode == "disk" and ws.fs.cat("kept.txt") == b"kept"


def test_vfs_mode_switch_rewrites_a_settings_file_that_disagrees(home):
    Workspace.create("alice", home, mode="sqlite").close()
    write_config(home, '[defaults]\nmode = "sqlite"\n\n[agents.alice]\nmode = "sqlite"\n')
    code, output = run("mode", "alice", "hybrid")
    assert code == 0, output
    settings = tomllib.loads(config_path(home).read_text())
    assert settings["agents"]["alice"]["mode"] == "hybrid"
    assert settings["defaults"]["mode"] == "sqlite"
    with Workspace.open("alice", home) as ws:
        assert ws.mode == "hybrid"


def test_vfs_mode_switch_leaves_the_defaults_for_new_agents_alone(home):
    Workspace.create("alice", home, mode="sqlite").close()
    write_config(home, '[defaults]\nmode = "sqlite"\n')
    code, output = run("mode", "alice", "hybrid")
    assert code == 0, output
    assert tomllib.loads(config_path(home).read_text()) == {"defaults": {"mode": "sqlite"}}
    code, output = run("ls", "alice:")
    assert code == 0, output


@pytest.mark.parametrize("mode", MODES)
def test_vfs_init_creates_the_agent_in_the_mode_the_settings_ask_for(home, tmp_path, mode):
    write_config(home, f'[defaults]\nmode = "{mode}"\n')
    code, output = run("init", "g5")
    assert code == 0 and f"({mode} mode)" in output, output
    assert Registry(home).get("g5").mode == mode
    code, output = run("ls", "g5:")
    assert code == 0, output
    other = next(m for m in MODES if m != mode)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(MODE_ENV, other)
        code, output = run("init", "g6")
    assert code == 0 and Registry(home).get("g6").mode == other, output
    code, output = run("init", "g7", "--mode", other)
    assert code == 0 and Registry(home).get("g7").mode == other, output
    with Workspace.create("g8", home) as ws:
        assert ws.mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_a_default_for_new_agents_never_contradicts_an_existing_agent(home, mode):
    other = next(m for m in MODES if m != mode)
    with Workspace.create("alice", home, mode=mode) as ws:
        ws.fs.pipe("kept.txt", b"kept")
    write_config(home, f'[defaults]\nmode = "{other}"\n')
    with Workspace.open("alice", home) as ws:
        assert ws.mode == mode and ws.fs.cat("kept.txt") == b"kept"
    code, output = run("cat", "alice:/kept.txt")
    assert code == 0 and output == "kept"
    code, output = run("mode", "alice")
    assert code == 0 and output == f"{mode}\n"
    code, output = run("mode", "alice", "--apply")
    assert code == 1 and "no AGENT_VFS_MODE or config.toml mode applies" in output


def test_init_over_a_missing_directory_is_an_error_that_creates_nothing(home, tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    for mode in MODES:
        code, output = run("init", "x", "--mode", mode, "--workspace", str(missing))
        assert code == 1 and "no such directory" in output and str(missing) in output
        assert len(output.strip().splitlines()) == 1
    assert not missing.exists() and not (home / "agents" / "x").exists()
    assert not Registry(home).exists("x")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(NotADirectoryError):
        Workspace.create("x", home, mode="hybrid", workspace=a_file)
    with pytest.raises(FileNotFoundError):
        Workspace.open("x", home, create=True, mode="disk", workspace=missing)
    assert not Registry(home).exists("x")


def test_bad_settings_get_a_clear_error_naming_the_file(home, monkeypatch):
    Workspace.create("alice", home, mode="sqlite").close()
    write_config(home, '[agents.alice]\nmode = "floppy"\n')
    code, output = run("mode", "alice")
    assert code == 1 and "config.toml [agents.alice]" in output and "floppy" in output
    write_config(home, "[agents.alice\n")
    code, output = run("ls", "alice:/")
    assert code == 1 and "invalid TOML" in output
    config_path(home).unlink()
    monkeypatch.setenv(MODE_ENV, "tape")
    code, output = run("mode", "alice")
    assert code == 1 and MODE_ENV in output
