"""`vfs exec`: a command runs in a temporary mount that never outlives it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_mount_support import requires_fuse

from tests.helpers import disk_tree, require_mode, run_vfs
from vfs import Workspace
from vfs.mount.process import mount_table
from vfs.state.registry import MODES, Registry

pytestmark = requires_fuse


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The TMPDIR `vfs exec` makes its mount point in, to see what it leaves."""
    path = tmp_path / "scratch"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    return path


def vfs_exec(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_vfs("--home", str(home), "exec", *args)


def assert_nothing_left(home: Path, scratch: Path) -> None:
    assert not [where for where in mount_table() if str(where).startswith(str(scratch))]
    assert list(scratch.iterdir()) == []
    listed = run_vfs("--home", str(home), "mounts", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


@pytest.mark.parametrize("mode", MODES)
def test_files_the_command_writes_are_in_the_agent_afterwards(
    home: Path, scratch: Path, tmp_path: Path, mode: str
) -> None:
    require_mode(mode)
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "seed.txt").write_text("seed\n")
    with Workspace.create("alice", home, mode=mode, workspace=lower) as ws:
        if mode == "sqlite":  # sqlite mode keeps files in the database, not in the tree
            ws.fs.pipe("/seed.txt", b"seed\n")
    before = disk_tree(lower)
    script = (
        'test "$PWD" = "$AGENT_VFS_MOUNT" && test "$AGENT_VFS_AGENT" = alice'
        " && cat seed.txt && mkdir -p out && printf made > out/result.txt"
    )
    done = vfs_exec(home, "alice", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "seed\n"
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/out/result.txt") == b"made"
    if mode == "hybrid":
        assert disk_tree(lower) == before  # the overlay took the change
    else:
        assert (lower / "out" / "result.txt").exists() == (mode == "disk")
    assert_nothing_left(home, scratch)


@pytest.mark.parametrize("status", [0, 1, 3, 255])
def test_the_command_exit_status_is_the_exit_status(home: Path, scratch: Path, status: int) -> None:
    Workspace.create("alice", home).close()
    done = vfs_exec(home, "alice", "--", "sh", "-c", f"printf x > f{status}; exit {status}")
    assert done.returncode == status
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat(f"/f{status}") == b"x"
    assert_nothing_left(home, scratch)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_command_killed_by_a_signal_gives_128_plus_it_and_no_mount_is_left(
    home: Path, scratch: Path, signum: int
) -> None:
    Workspace.create("alice", home).close()
    # The command holds a file open for writing in the mount when it dies.
    script = f"exec 3> held.txt; printf partial >&3; kill -{int(signum)} $$"
    done = vfs_exec(home, "alice", "--", "sh", "-c", script)
    assert done.returncode == 128 + signum
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/held.txt") == b"partial"
    assert_nothing_left(home, scratch)


def test_read_only_makes_writes_fail_inside_the_command(home: Path, scratch: Path) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/keep.txt", b"kept")
    done = vfs_exec(home, "alice", "--read-only", "--", "sh", "-c", "cat keep.txt; echo x > new")
    assert done.returncode != 0
    assert done.stdout == "kept"
    assert "Read-only file system" in done.stderr
    with Workspace.open("alice", home) as ws:
        assert ws.fs.ls("/", detail=False) == ["/keep.txt"]
    assert_nothing_left(home, scratch)


def test_a_command_that_cannot_start_exits_127_in_one_line(home: Path, scratch: Path) -> None:
    Workspace.create("alice", home).close()
    done = vfs_exec(home, "alice", "--", "no-such-command-anywhere")
    assert done.returncode == 127
    assert done.stderr.strip() == "vfs exec: no-such-command-anywhere: command not found"
    assert_nothing_left(home, scratch)


def test_an_unknown_agent_is_one_line_and_leaves_nothing(home: Path, scratch: Path) -> None:
    Workspace.create("alice", home).close()
    done = vfs_exec(home, "ghost", "--", "true")
    assert done.returncode == 1
    assert "ghost" in done.stderr and "Traceback" not in done.stderr
    assert list(scratch.iterdir()) == []


def test_sigterm_to_vfs_exec_ends_the_command_then_unmounts(home: Path, scratch: Path) -> None:
    Workspace.create("alice", home).close()
    command = [str(Path(sys.executable).with_name("vfs")), "--home", str(home), "exec", "alice"]
    script = "trap 'printf stopped > trapped.txt; exit 7' TERM; printf ready > up.txt; while :; do sleep 0.05; done"
    runner = subprocess.Popen([*command, "--", "sh", "-c", script], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not any(True for _ in scratch.glob("*/up.txt")):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 7
    finally:
        if runner.poll() is None:
            runner.kill()
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/trapped.txt") == b"stopped"
    assert_nothing_left(home, scratch)


@contextlib.contextmanager
def vfs_exec_killed(
    home: Path, flags: list[str], started_in: Callable[[], Path | None]
) -> Iterator[None]:
    """Run a command under ``vfs exec alice [flags]`` that writes ``data.txt``,
    ``pid.txt`` and ``up.txt`` in its mount, then sleeps; once ``started_in()``
    names the directory where ``up.txt`` showed, SIGKILL ``vfs exec`` (not the
    command). The command, left running, is killed when the block ends."""
    command = [str(Path(sys.executable).with_name("vfs")), "--home", str(home), "exec", "alice"]
    script = "printf kept > data.txt; printf $$ > pid.txt; : > up.txt; exec sleep 60"
    runner = subprocess.Popen([*command, *flags, "--", "sh", "-c", script])
    orphan = None
    try:
        deadline = time.monotonic() + 60
        while (directory := started_in()) is None:
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        orphan = int((directory / "pid.txt").read_text())
        runner.kill()
        runner.wait(timeout=10)
        yield
    finally:
        if runner.poll() is None:
            runner.kill()
        if orphan is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
def test_vfs_exec_killed_by_sigkill_leaves_no_fuse_mount_behind(
    home: Path, scratch: Path, mode: str
) -> None:
    require_mode(mode)
    Workspace.create("alice", home, mode=mode).close()

    def started_in() -> Path | None:
        return next((up.parent for up in scratch.glob("*/up.txt")), None)

    with vfs_exec_killed(home, ["--fuse"], started_in):
        # The mount's process sees its owner die, flushes, unmounts and removes the directory.
        deadline = time.monotonic() + 30
        while list(scratch.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_nothing_left(home, scratch)
        with Workspace.open("alice", home) as ws:
            assert ws.fs.cat("/data.txt") == b"kept"


def test_vfs_exec_killed_by_sigkill_leaves_no_bind_mount_behind(home: Path, scratch: Path) -> None:
    require_mode("disk")
    Workspace.create("alice", home, mode="disk").close()
    directory = Registry(home).get("alice").workspace

    def started_in() -> Path | None:
        return directory if (directory / "up.txt").exists() else None

    with vfs_exec_killed(home, [], started_in):
        # The bind mount is in the command's own mount namespace: none shows
        # here, no record stays, and the mount point is an empty directory.
        assert not [where for where in mount_table() if str(where).startswith(str(scratch))]
        listed = run_vfs("--home", str(home), "mounts", "--json")
        assert json.loads(listed.stdout) == []
        assert [list(p.iterdir()) for p in scratch.iterdir()] == [[]]


def test_a_process_the_command_leaves_behind_cannot_keep_the_mount(
    home: Path, scratch: Path
) -> None:
    Workspace.create("alice", home).close()
    # The straggler writes, then keeps a file open and its cwd in the mount; its
    # output goes elsewhere so that only the mount could keep `vfs exec` waiting.
    script = (
        "(printf bg > bg.txt; exec 3>> bg.txt; : > up; exec sleep 60) >/dev/null 2>&1 & "
        "echo $!; while [ ! -e up ]; do sleep 0.05; done; printf fg > fg.txt; exit 4"
    )
    started = time.monotonic()
    done = vfs_exec(home, "alice", "--", "sh", "-c", script)
    straggler = int(done.stdout)
    try:
        assert done.returncode == 4, done.stderr
        assert time.monotonic() - started < 50  # did not wait for the straggler
        assert os.path.exists(f"/proc/{straggler}")  # which still runs
        with Workspace.open("alice", home) as ws:
            assert (ws.fs.cat("/bg.txt"), ws.fs.cat("/fg.txt")) == (b"bg", b"fg")
        assert_nothing_left(home, scratch)
    finally:
        os.kill(straggler, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_before_the_command_lets_a_runtime_roll_it_back(
    home: Path, scratch: Path, tmp_path: Path, mode: str
) -> None:
    require_mode(mode)
    lower = tmp_path / "lower"
    lower.mkdir()
    with Workspace.create("alice", home, mode=mode, workspace=lower) as ws:
        ws.fs.pipe("/keep.txt", b"before")
    done = vfs_exec(
        home, "alice", "--checkpoint", "--", "sh", "-c", "printf after > keep.txt; touch new.txt"
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    name = line.removeprefix("checkpoint ")
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/keep.txt") == b"after"
        ws.checkpoints.restore(name)
        assert ws.fs.cat("/keep.txt") == b"before"
        assert not ws.fs.exists("/new.txt")
    assert_nothing_left(home, scratch)
