"""Mounting, unmounting, signals, crashes, and other processes using the agent meanwhile."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyfuse3
import pytest
import trio
from click.testing import CliRunner
from test_mount_support import (
    FUSE_MISSING,
    create_agent,
    env_for,
    fresh_mount,
    mount_agent,
    require_backend,
)

import vfs.mount.process as mount_process
from vfs import Workspace
from vfs.backends.host import mount_table
from vfs.cli import main
from vfs.mount.kernel import kernel_op
from vfs.state.registry import MODES

pytestmark = pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")

CACHE_TIMEOUT = 0.3
VFS = Path(sys.executable).with_name("vfs")


def vfs(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(VFS), *args],
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def read_back(home: Path, path: str, agent: str = "alice") -> bytes:
    with Workspace.open(agent, home) as ws:
        return bytes(ws.fs.cat_file(path))


def test_cli_mount_serves_in_background_lists_and_unmounts(tmp_path: Path) -> None:
    home, where = tmp_path / "home", tmp_path / "mnt"
    create_agent(home, "sqlite")
    where.mkdir()
    vfs("mount", "-o", "noatime", "alice", str(where), home=home)
    try:
        assert mount_table()[where] == "fuse.agentvfs"
        options = next(
            line.split()[5]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4] == str(where)
        )
        assert "noatime" in options.split(",")  # -o reached the kernel
        (where / "hello.txt").write_text("hi")
        listed = json.loads(vfs("mounts", "--json", home=home).stdout)
        assert [(m["agent"], m["mountpoint"]) for m in listed] == [("alice", str(where))]
        pid = listed[0]["pid"]
    finally:
        vfs("umount", str(where), home=home)
    assert where not in mount_table()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert json.loads(vfs("mounts", "--json", home=home).stdout) == []
    assert read_back(home, "/hello.txt") == b"hi"


def test_cli_mount_refusals_are_one_line_and_exit_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    create_agent(home, "sqlite")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    with mount_agent(home, tmp_path / "mnt"):
        cases = {
            "twice": ["mount", "alice", str(other)],
            "missing": ["mount", "alice", str(tmp_path / "absent")],
            "non-empty": ["mount", "alice", str(full)],
            "unknown agent": ["mount", "bob", str(other)],
        }
        for case, args in cases.items():
            done = vfs(*args, home=home, check=False)
            assert done.returncode == 1, case
            assert len(done.stderr.strip().splitlines()) == 1, (case, done.stderr)
        assert "already mounted" in vfs(*cases["twice"], home=home, check=False).stderr
    assert "not mounted" in vfs("umount", str(other), home=home, check=False).stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_mount_point_inside_the_agents_own_workspace_is_refused(
    tmp_path: Path, mode: str
) -> None:
    home = tmp_path / "home"
    create_agent(home, mode)
    with Workspace.open("alice", home) as ws:
        inside = ws.registry.get("alice").workspace / "sub" / "mnt"
    inside.mkdir(parents=True)
    done = vfs("mount", "alice", str(inside), home=home, check=False)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "inside agent alice's own workspace directory" in done.stderr
    with pytest.raises(OSError, match="own workspace directory") as refused:
        mount_process.start("alice", inside, home=home, fuse=True)
    assert refused.value.errno == errno.EINVAL
    assert inside not in mount_table()
    assert json.loads(vfs("mounts", "--json", home=home).stdout) == []


def test_mount_without_dev_fuse_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    create_agent(home, "sqlite")
    (tmp_path / "mnt").mkdir()
    monkeypatch.setattr(mount_process, "FUSE_DEVICE", tmp_path / "no-such-device")
    result = CliRunner().invoke(
        main, ["--home", str(home), "mount", "alice", str(tmp_path / "mnt")]
    )
    assert result.exit_code == 1
    assert "/dev/fuse does not exist" in result.output


HOLD_OPEN = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * (1 << 20))
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_flushes_open_files_and_unmounts(tmp_path: Path, mode: str) -> None:
    with fresh_mount(tmp_path, mode, fuse=True) as mounted:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_OPEN, str(mounted.root / "held.bin")],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"written\n"
            mounted.server.send_signal(signal.SIGTERM)
            assert mounted.server.wait(timeout=30) == 0
        finally:
            holder.kill()
            holder.wait()
        assert mounted.root not in mount_table()
    assert read_back(mounted.home, "/held.bin") == b"x" * (1 << 20)


WRITER = """
import os, sys
root, log = sys.argv[1], open(sys.argv[2], "a")
held = os.open(os.path.join(root, "held"), os.O_RDWR | os.O_CREAT, 0o644)
os.write(held, b"orphan")
os.unlink(os.path.join(root, "held"))
i = 0
while True:
    name = f"f{i:05d}"
    with open(os.path.join(root, name), "wb") as f:
        f.write(name.encode() * 5000)
    log.write(name + "\\n"); log.flush(); os.fsync(log.fileno())
    i += 1
"""


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_mid_write_then_remount_loses_nothing_committed(tmp_path: Path, mode: str) -> None:
    require_backend(mode)
    home, where, log = tmp_path / "home", tmp_path / "mnt", tmp_path / "written.log"
    create_agent(home, mode)
    where.mkdir()
    first = mount_process.start("alice", where, home=home, fuse=True)
    assert first.process is not None
    try:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(where), str(log)])
        try:
            deadline = time.monotonic() + 20
            while (
                not log.exists() or len(log.read_text().split()) < 30
            ) and time.monotonic() < deadline:
                time.sleep(0.05)
            first.process.kill()
            first.process.wait()
        finally:
            writer.kill()
            writer.wait()
        assert where in mount_table()  # dead, but still mounted
        assert json.loads(vfs("mounts", "--json", home=home).stdout) == []  # stale record dropped
        # The next mount clears the dead mount point itself.
        remount = mount_process.start("alice", where, home=home, fuse=True)
        mount_process.stop(remount)
    finally:
        mount_process.stop(first)
    committed = log.read_text().split()
    assert len(committed) >= 30
    with mount_agent(home, where, mode=mode):
        for name in committed:
            assert (where / name).read_bytes() == name.encode() * 5000
        assert not (where / "held").exists()
    with Workspace.open("alice", home) as ws:
        assert ws.db.integrity_check() == []
        reclaim = getattr(ws.backend, "reclaim_orphans", None)
        if reclaim is not None:
            assert reclaim() == 0  # the remount already freed the orphan


def inode_exists(ws: Workspace, ino: int) -> bool:
    try:
        ws.backend.getattr(ino)
    except FileNotFoundError:
        return False
    return True


@pytest.mark.parametrize("mode", ["sqlite", "hybrid"])
def test_files_unlinked_through_the_mount_are_freed_while_it_runs(
    tmp_path: Path, mode: str
) -> None:
    """The mount keeps a file the kernel knows alive past its last name, and
    frees it (in batches) soon after the kernel forgets it, not at unmount."""
    with fresh_mount(tmp_path, mode) as mounted:
        inos = []
        for i in range(300):  # more than one batch
            path = mounted.root / f"gone-{i}"
            path.write_bytes(b"x" * 1000)
            inos.append(path.stat().st_ino)
            path.unlink()
        with Workspace.open("alice", mounted.home) as ws:
            deadline = time.monotonic() + 5
            alive = list(inos)
            while alive and time.monotonic() < deadline:
                alive = [ino for ino in alive if inode_exists(ws, ino)]
                time.sleep(0.02)
            assert alive == []
            assert ws.backend.reclaim_orphans() == 0


FSSPEC_USER = """
import sys, fsspec
fs = fsspec.filesystem("agentvfs", agent="alice", home=sys.argv[1], skip_instance_cache=True)
for i in range(100):
    fs.pipe_file(f"/shared/from-fsspec-{i}", b"fsspec %d" % i)
    if i % 10 == 0:
        fs.ls("/shared")
seen = sorted(p for p in fs.ls("/shared", detail=False) if "from-mount" in p)
print(len(seen))
"""


@pytest.mark.parametrize("mode", MODES)
def test_fsspec_and_cli_use_the_agent_while_mounted(tmp_path: Path, mode: str) -> None:
    with fresh_mount(tmp_path, mode, cache_timeout=CACHE_TIMEOUT) as mounted:
        shared = mounted.root / "shared"
        shared.mkdir()
        user = subprocess.Popen(
            [sys.executable, "-c", FSSPEC_USER, str(mounted.home)],
            env=env_for(mounted.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(100):
            (shared / f"from-mount-{i}").write_bytes(b"mount %d" % i)
        _, err = user.communicate(timeout=120)
        assert user.returncode == 0, err
        assert "locked" not in err
        cli = vfs("cat", "alice:/shared/from-mount-7", home=mounted.home)
        assert cli.stdout == "mount 7"
        time.sleep(CACHE_TIMEOUT + 0.2)
        names = os.listdir(shared)
        assert len([n for n in names if n.startswith("from-fsspec-")]) == 100
        assert (shared / "from-fsspec-42").read_bytes() == b"fsspec 42"


@pytest.mark.parametrize("mode", MODES)
def test_changes_by_another_process_show_within_the_cache_timeout(
    tmp_path: Path, mode: str
) -> None:
    with fresh_mount(tmp_path, mode, cache_timeout=CACHE_TIMEOUT) as mounted:
        target = mounted.root / "note.txt"
        target.write_bytes(b"version 1")
        assert target.read_bytes() == b"version 1"  # now in the kernel's page cache
        assert not (mounted.root / "later.txt").exists()  # a cached miss
        with Workspace.open("alice", mounted.home) as ws:
            ws.fs.pipe_file("/note.txt", b"version 2")
            ws.fs.pipe_file("/later.txt", b"new")
        time.sleep(CACHE_TIMEOUT + 0.2)
        assert target.read_bytes() == b"version 2"
        with Workspace.open("alice", mounted.home) as ws:  # same inode, same size
            handle = ws.backend.open(ws.backend.resolve("/note.txt").ino, os.O_WRONLY)
            handle.write(0, b"VERSION 3")
            handle.close()
        time.sleep(CACHE_TIMEOUT + 0.2)
        assert target.read_bytes() == b"VERSION 3"
        assert (mounted.root / "later.txt").read_bytes() == b"new"
        with Workspace.open("alice", mounted.home) as ws:
            ws.fs.rm_file("/later.txt")
        time.sleep(CACHE_TIMEOUT + 0.2)
        assert not (mounted.root / "later.txt").exists()


def test_read_only_mount_refuses_changes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    create_agent(home, "sqlite")
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe_file("/kept.txt", b"kept")
    with mount_agent(home, tmp_path / "mnt", read_only=True) as mounted:
        assert (mounted.root / "kept.txt").read_bytes() == b"kept"
        for attempt in (
            lambda: (mounted.root / "new.txt").write_bytes(b"no"),
            lambda: (mounted.root / "kept.txt").unlink(),
            lambda: os.mkdir(mounted.root / "dir"),
        ):
            with pytest.raises(OSError) as caught:
                attempt()
            assert caught.value.errno == errno.EROFS


def test_undecodable_name_is_refused_with_eilseq(tmp_path: Path) -> None:
    with fresh_mount(tmp_path, "sqlite") as mounted:
        with pytest.raises(OSError) as caught:
            os.open(bytes(mounted.root) + b"/bad-\xff-name", os.O_CREAT | os.O_WRONLY, 0o644)
        assert caught.value.errno == errno.EILSEQ
        (mounted.root / "still-works.txt").write_text("yes")
        assert (mounted.root / "still-works.txt").read_text() == "yes"


def test_kernel_op_turns_errors_into_fuse_errors_and_survives_the_unexpected() -> None:
    @kernel_op
    async def fails_with(exc: BaseException) -> None:
        raise exc

    async def errno_of(exc: BaseException) -> int:
        try:
            await fails_with(exc)
        except pyfuse3.FUSEError as fuse_error:
            return fuse_error.errno
        raise AssertionError("no FUSEError")

    assert trio.run(errno_of, OSError(errno.ENOSPC, "full")) == errno.ENOSPC
    assert trio.run(errno_of, FileNotFoundError(errno.ENOENT, "gone")) == errno.ENOENT
    assert trio.run(errno_of, RuntimeError("bug")) == errno.EIO


def test_busy_umount_fails_clearly_and_lazy_umount_detaches(tmp_path: Path) -> None:
    home, where = tmp_path / "home", tmp_path / "mount point é"
    create_agent(home, "sqlite")
    with mount_agent(home, where) as mounted:
        held = open(where / "open.txt", "w")  # noqa: SIM115 - held open across the unmount
        try:
            busy = vfs("umount", str(where), home=home, check=False)
            assert busy.returncode == 1
            assert "busy" in busy.stderr.lower() and len(busy.stderr.splitlines()) == 1
            vfs("umount", "--lazy", str(where), home=home)
            assert where not in mount_table()
            held.write("written after the detach")
        finally:
            held.close()
        assert mounted.server.wait(timeout=30) == 0
    assert read_back(home, "/open.txt") == b"written after the detach"


def test_foreground_mount_stays_attached_until_interrupted(tmp_path: Path) -> None:
    home, where = tmp_path / "home", tmp_path / "mnt"
    create_agent(home, "sqlite")
    where.mkdir()
    process = subprocess.Popen(
        [str(VFS), "mount", "--foreground", "alice", str(where)],
        env=env_for(home),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while where not in mount_table() and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.05)
        (where / "fg.txt").write_text("foreground")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        mount_process.stop(mount_process.Mount("alice", where, "fuse", home, process))  # type: ignore[arg-type]
    assert where not in mount_table()
    assert read_back(home, "/fg.txt") == b"foreground"
