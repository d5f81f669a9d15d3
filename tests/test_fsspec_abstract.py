"""fsspec's own abstract test suites, run against every workspace mode."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path

import fsspec.tests.abstract as abstract
import pytest

from vfs import Workspace
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES


@pytest.fixture(params=MODES)
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    if request.param == "hybrid":
        pytest.importorskip(
            "vfs.backends.hybrid.backend", reason="the hybrid backend is not installed"
        )
    ws = Workspace.create("abstract", tmp_path / "home", mode=request.param)
    yield ws
    ws.close()


class AgentFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, workspace: Workspace) -> AgentFileSystem:
        return AgentFileSystem(workspace=workspace, skip_instance_cache=True)

    @pytest.fixture
    def fs_join(self):  # type: ignore[no-untyped-def]
        return posixpath.join

    @pytest.fixture
    def fs_path(self) -> str:
        return "/root"


class TestCopy(abstract.AbstractCopyTests, AgentFixtures):
    pass


class TestGet(abstract.AbstractGetTests, AgentFixtures):
    pass


class TestPut(abstract.AbstractPutTests, AgentFixtures):
    pass


class TestPipe(abstract.AbstractPipeTests, AgentFixtures):
    pass


class TestOpen(abstract.AbstractOpenTests, AgentFixtures):
    pass
