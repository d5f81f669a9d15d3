"""The documentation covers every command and the README's commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from vfs.cli import main

REPO = Path(__file__).resolve().parent.parent


def all_commands(group: click.Group, prefix: str = "vfs") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{prefix} {name}")
    return found


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    reference = (REPO / "docs" / "cli.md").read_text()
    for path, command in all_commands(main):
        assert f"## `{path}`" in reference, f"{path} is not documented in docs/cli.md"
        section = reference.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in section, f"{path} {opt} is not documented"


def test_committed_cli_reference_is_the_generated_one() -> None:
    generated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_reference.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "40"},  # the reference does not depend on the terminal
    ).stdout
    assert (REPO / "docs" / "cli.md").read_text() == generated, (
        "docs/cli.md is stale: python scripts/cli_reference.py > docs/cli.md"
    )


def test_the_reference_shows_the_help_each_command_prints() -> None:
    reference = (REPO / "docs" / "cli.md").read_text()
    runner = CliRunner()
    for path, _ in [("vfs", main), *all_commands(main)]:
        args = [*path.split(" ")[1:], "--help"]
        # The width of an 80-column terminal; CliRunner's own default is 80, not 78.
        result = runner.invoke(main, args, prog_name="vfs", terminal_width=78)
        assert result.exit_code == 0, result.output
        assert f"```\n{result.output}```" in reference, f"{path} --help differs from docs/cli.md"


def test_exit_statuses_are_the_documented_ones(tmp_path: Path) -> None:
    reference = (REPO / "docs" / "cli.md").read_text()
    assert "1 for an error" in reference and "2 for a usage error" in reference
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    usage = runner.invoke(main, [*home, "ls", "alice:/", "--no-such-option"])
    assert usage.exit_code == 2 and "Usage:" in usage.output
    assert runner.invoke(main, [*home, "no-such-command"]).exit_code == 2
    error = runner.invoke(main, [*home, "ls", "ghost:/"])
    assert error.exit_code == 1 and error.output == "Error: no such agent: ghost\n"


def test_readme_commands_and_links_exist() -> None:
    readme = (REPO / "README.md").read_text()
    for script in re.findall(r"bash (scripts/\S+\.sh)", readme):
        assert (REPO / script).is_file(), script
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (REPO / link).is_file(), link
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
