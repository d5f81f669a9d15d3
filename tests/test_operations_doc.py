"""Every command in docs/operations.md runs verbatim, against agents and an S3
bucket the test prepares on a loopback server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.support.s3_server import s3_server
from vfs import Workspace


def shell_lines(markdown: str) -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_every_command_of_the_operations_guide_runs(home: Path, tmp_path: Path) -> None:
    lines = shell_lines((REPO / "docs" / "operations.md").read_text())
    assert len(lines) >= 10
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/notes.md", b"# notes\n")
    Workspace.create("bob", home, mode="disk").close()
    vfs = str(Path(sys.executable).with_name("vfs"))
    with s3_server() as environment:
        env = {**os.environ, **environment}
        import s3fs

        s3fs.S3FileSystem(
            endpoint_url=environment["FSSPEC_S3_ENDPOINT_URL"], key="testing", secret="testing"
        ).mkdir("team-backups")
        for line in lines:
            assert line.startswith("vfs "), line
            result = subprocess.run(
                [vfs, *line.split()[1:]], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, (line, result.stderr)
    with Workspace.open("bob", home) as ws:
        assert ws.fs.cat("/notes.md") == b"# notes\n"


@pytest.mark.parametrize("name", ["operations.md"])
def test_the_operations_guide_is_linked_from_the_readme(name: str) -> None:
    assert f"docs/{name}" in (REPO / "README.md").read_text()
