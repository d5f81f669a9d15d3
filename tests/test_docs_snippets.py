"""Every ```python and ```sh snippet of the pages in DOCS runs verbatim.

Each snippet runs in a fresh interpreter or shell with its own home directory
(``~`` and ``$AGENT_VFS_HOME``) and no input (stdin is empty, so a server that
reads stdin, like ``vfs mcp``, ends), after the setup a reader would have done:
the directories it names exist (``~/src/project`` is a git checkout with a
Makefile). Nothing else exists: a snippet creates the agents it uses. Mounts
are real FUSE mounts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [
    "README.md",
    "docs/guide.md",
    "docs/checkpoints.md",
    "docs/hybrid.md",
    "docs/mount.md",
    "docs/stores.md",
    "docs/tools.md",
]  # docs/operations.md has its own test: its commands need an S3 server
SNIPPET = re.compile(r"^```(python|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The repository's own entry points: they install system packages and a virtualenv
# and run the whole suite (this test included), so CI runs them instead.
SETUP_SCRIPTS = re.compile(r"bash scripts/(demo|test)\.sh")


def snippets() -> list[pytest.param]:  # type: ignore[valid-type]
    found = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for match in SNIPPET.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            language, code = match.group(1), match.group(2)
            marks = []
            if SETUP_SCRIPTS.search(code):
                marks.append(pytest.mark.skip(reason="runs setup.sh and the whole suite"))
            elif "vfs mount" in code and importlib.util.find_spec("pyfuse3") is None:
                marks.append(pytest.mark.skip(reason="mounting needs the fuse extra"))
            found.append(pytest.param(language, code, id=f"{doc}:{line}", marks=marks))
    return found


def prepare(user_home: Path) -> None:
    """What a reader has before following the docs: the trees they name."""
    project = user_home / "src" / "project"
    project.mkdir(parents=True)
    (project / "Makefile").write_text("test:\n\t@echo tests pass\n")
    (project / "main.py").write_text("print('hello')\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (user_home / "src" / "app").mkdir()


def mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mounts") as table:
        return [line.split()[1] for line in table if line.split()[1].startswith(str(root))]


@pytest.mark.parametrize(("language", "code"), snippets())
def test_doc_snippet_runs_verbatim(tmp_path: Path, language: str, code: str) -> None:
    user_home = tmp_path / "user"
    prepare(user_home)
    env = {
        **os.environ,
        "HOME": str(user_home),
        "AGENT_VFS_HOME": str(tmp_path / "vfs-home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("AGENT_VFS_MODE", None)
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-e", "-c", code]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        for where in mounts_under(tmp_path):
            subprocess.run(["umount", "-l", where], check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Error:" not in result.stderr and "Traceback" not in result.stderr, output
