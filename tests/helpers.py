"""Small helpers shared by test modules."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def require_mode(mode: str) -> None:
    """Skip when the backend for ``mode`` is not part of this build."""
    if importlib.util.find_spec(f"backends.{mode}") is None:
        pytest.skip(f"the {mode} backend module backends/{mode}.py is absent")


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
