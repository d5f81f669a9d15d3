"""Small helpers shared by test modules."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vfs import Workspace

REPO = Path(__file__).resolve().parent.parent


def require_mode(mode: str) -> None:
    """Skip when the backend for ``mode`` is not part of this build."""
    if importlib.util.find_spec(f"vfs.backends.{mode}") is None:
        pytest.skip(f"the {mode} backend package backends/{mode}/ is absent")


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter; return stdout, fail on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_vfs(
    *args: str, kill_after: int | str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``vfs`` CLI in a fresh process; with ``kill_after``, SIGKILL it at
    that durable step boundary of a resumable operation."""
    if kill_after is None:
        command = [str(Path(sys.executable).with_name("vfs")), *args]
    else:
        command = [sys.executable, "-m", "tests.support.crash_run", str(kill_after), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


def disk_tree(root: Path) -> dict[str, bytes | None]:
    """Every path under a host directory: file bytes, or None for a directory."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def workspace_tree(ws: Workspace) -> dict[str, bytes | None]:
    """Every path of a workspace as its mode shows it, in the form of :func:`disk_tree`."""
    found: dict[str, bytes | None] = {}
    for path, info in ws.fs.find("/", withdirs=True, detail=True).items():
        name = path.strip("/")
        if name:
            found[name] = None if info["type"] == "directory" else bytes(ws.fs.cat(path))
    return found


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"8m"``) mounted at a new directory ``where``, so
    that a real ENOSPC comes quickly; skips the test where mounting is not allowed."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
