"""Fixtures the FUSE mount tests share: a real mount in a child process, per mode.

Every mount is taken down in teardown, even when the test failed: unmount,
then SIGTERM, then ``fusermount3 -u -z`` and SIGKILL as the last resort.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require_mode
from vfs import Workspace
from vfs.mount.process import mounted
from vfs.state.registry import MODES

FUSE_MISSING = not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None
requires_fuse = pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")


require_backend = require_mode


@dataclass
class Mounted:
    """A live mount: where it is, which agent, and the serving process."""

    agent: str
    mode: str
    home: Path
    root: Path
    process: subprocess.Popen[bytes]


def create_agent(home: Path, mode: str, agent: str = "alice") -> None:
    Workspace.create(agent, home, mode=mode).close()


@contextlib.contextmanager
def mount_agent(
    home: Path, root: Path, agent: str = "alice", mode: str = "sqlite", **options: object
) -> Iterator[Mounted]:
    root.mkdir(parents=True, exist_ok=True)
    with mounted(agent, root, home=home, **options) as process:  # type: ignore[arg-type]
        yield Mounted(agent, mode, home, root, process)


@contextlib.contextmanager
def fresh_mount(
    base: Path, mode: str, agent: str = "alice", **options: object
) -> Iterator[Mounted]:
    """A new home with one agent in ``mode``, mounted at ``base/mnt``."""
    require_backend(mode)
    home = base / "home"
    create_agent(home, mode, agent)
    with mount_agent(home, base / "mnt", agent, mode, **options) as mounted:
        yield mounted


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "AGENT_VFS_HOME": str(home)}


@pytest.fixture(scope="module", params=MODES)
def module_mount(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mounted]:
    """One mount per mode shared by a module's tests; each test works in its own directory."""
    if FUSE_MISSING:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is absent")
    mode = request.param
    with fresh_mount(tmp_path_factory.mktemp(f"mount-{mode}"), mode) as mounted:
        yield mounted
