"""Fixtures the mount tests share: a real mount, per mode and kind.

A FUSE mount is served by a child process; a disk-mode agent gets a kernel
bind mount unless ``fuse=True`` is passed. Every mount is taken down in
teardown, even when the test failed: unmount, then SIGTERM, then
``fusermount3 -u -z`` and SIGKILL as the last resort (a bind mount: unmount,
then a lazy unmount).
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

FUSE_MISSING = not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None
requires_fuse = pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")


require_backend = require_mode


#: what ``module_mount`` mounts: each mode, and disk mode through FUSE as well
# as the default bind mount -> (mode, fuse)
MOUNT_KINDS = {
    "sqlite": ("sqlite", False),
    "disk": ("disk", False),
    "hybrid": ("hybrid", False),
    "disk-fuse": ("disk", True),
}


@dataclass
class Mounted:
    """A live mount: where it is, which agent, its kind, and the serving process
    (None for a bind mount)."""

    agent: str
    mode: str
    home: Path
    root: Path
    process: subprocess.Popen[bytes] | None
    kind: str = "fuse"

    @property
    def server(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "a bind mount has no serving process"
        return self.process


def create_agent(home: Path, mode: str, agent: str = "alice") -> None:
    Workspace.create(agent, home, mode=mode).close()


@contextlib.contextmanager
def mount_agent(
    home: Path, root: Path, agent: str = "alice", mode: str = "sqlite", **options: object
) -> Iterator[Mounted]:
    root.mkdir(parents=True, exist_ok=True)
    with mounted(agent, root, home=home, **options) as mount:  # type: ignore[arg-type]
        yield Mounted(agent, mode, home, root, mount.process, mount.kind)


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


@pytest.fixture(scope="module", params=sorted(MOUNT_KINDS))
def module_mount(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mounted]:
    """One mount per mode (and disk mode both ways) shared by a module's tests;
    each test works in its own directory."""
    if FUSE_MISSING:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is absent")
    mode, fuse = MOUNT_KINDS[request.param]
    base = tmp_path_factory.mktemp(f"mount-{request.param}")
    with fresh_mount(base, mode, fuse=fuse) as mounted:
        yield mounted
