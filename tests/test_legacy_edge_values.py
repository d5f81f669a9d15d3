"""Legacy values SQLite cannot hold as integers are kept, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from vfs import Workspace
from vfs.cli import main


def test_out_of_range_updated_at_imports_without_a_traceback(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    entries = {"k1": {"sessionId": "s1", "updatedAt": 1e300, "note": "huge"},
               "k2": {"sessionId": "s2", "updatedAt": 10**23}}  # fmt: skip
    (source / "sessions.json").write_text(json.dumps(entries))
    Workspace.create("alice", home).close()
    result = CliRunner().invoke(main, ["--home", str(home), "migrate", "alice", str(source)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.get("k1").fields["updatedAt"] == 1e300
        assert ws.sessions.get("k2").fields["updatedAt"] == 10**23


def test_cli_reports_an_overflowing_size_as_one_line(home: Path) -> None:
    Workspace.create("alice", home).close()
    result = CliRunner().invoke(
        main, ["--home", str(home), "cache", "stats", "alice", "--budget", "9" * 30 + "G"]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
