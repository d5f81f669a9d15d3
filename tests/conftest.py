"""Shared fixtures: a fresh home directory per test and workspaces in each mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.backend_contract import given  # noqa: F401 - the contract suite's fixture
from vfs import Workspace
from vfs.backends.hybrid.backend import HybridBackend
from vfs.fs import AgentFileSystem


@pytest.fixture(autouse=True)
def _forget_cached_filesystems() -> Iterator[None]:
    """fsspec caches filesystem instances for the life of the process; a test's
    instances (and the databases they hold open) must not outlive it."""
    yield
    AgentFileSystem.clear_instance_cache()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AGENT_VFS_HOME, also exported for subprocesses and the CLI."""
    path = tmp_path / "home"
    monkeypatch.setenv("AGENT_VFS_HOME", str(path))
    return path


@pytest.fixture
def make_workspace(home: Path) -> Iterator[Callable[..., Workspace]]:
    """Create workspaces in a mode; all are closed at the end of the test."""
    opened: list[Workspace] = []

    def make(mode: str = "sqlite", agent: str = "alice", **kwargs: object) -> Workspace:
        ws = Workspace.create(agent, home, mode=mode, **kwargs)  # type: ignore[arg-type]
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture
def overlay(
    make_workspace: Callable[..., Workspace], lower: Path
) -> tuple[Workspace, HybridBackend]:
    """A hybrid workspace over the test module's own ``lower`` tree."""
    ws = make_workspace("hybrid", workspace=lower)
    backend = ws.files_backend
    assert isinstance(backend, HybridBackend)
    return ws, backend
