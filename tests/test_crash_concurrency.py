"""SIGKILL mid-write loses nothing; concurrent writer processes never see "locked"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, require_mode
from vfs import Workspace
from vfs.state.registry import MODES

WRITER = """
import sys, xxhash
from vfs import Workspace

def content(name, version):
    # Self-describing content: a version header, then bytes derived from it;
    # sizes vary so that some files span several chunks.
    size = 1000 + (version * 7919 + len(name) * 104729) % 300_000
    seed = f"{name}:{version}:".encode()
    body = (xxhash.xxh3_128_digest(seed) * (size // 16 + 1))[:size]
    return f"v{version:06d}|".encode() + body

ws = Workspace.open("crash", sys.argv[1])
fs = ws.fs
names = [f"/dir{i % 3}/file{i}.bin" for i in range(12)]
version = 0
while True:
    version += 1
    for name in names:
        if version % 2:
            fs.pipe(name, content(name, version))
        else:
            with fs.open(name, "wb", block_size=65536) as f:
                data = content(name, version)
                for start in range(0, len(data), 50_000):
                    f.write(data[start:start + 50_000])
    print(version, flush=True)
"""


def expected(name: str, version: int) -> bytes:
    import xxhash

    size = 1000 + (version * 7919 + len(name) * 104729) % 300_000
    seed = f"{name}:{version}:".encode()
    body = (xxhash.xxh3_128_digest(seed) * (size // 16 + 1))[:size]
    return f"v{version:06d}|".encode() + body


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("delay", [0.4, 1.1])
def test_sigkill_mid_write_leaves_old_or_new_content(home: Path, mode: str, delay: float) -> None:
    require_mode(mode)
    Workspace.create("crash", home, mode=mode).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "1"  # every file exists in version 1
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    ws = Workspace.open("crash", home)
    assert ws.db.integrity_check() == []
    names = [f"/dir{i % 3}/file{i}.bin" for i in range(12)]
    for name in names:
        data = ws.fs.cat(name)
        version = int(data[1:7])
        assert data == expected(name, version), f"{name} is torn"
    ws.backend.reclaim_orphans()  # the killed writer's half-written nameless file
    if mode == "disk":
        leftovers = [p for p in ws.record.workspace.rglob("*") if "agentvfs-tmp" in p.name]
        assert leftovers == []
    else:
        assert ws.db.value("SELECT count(*) FROM inodes WHERE nlink = 0") == 0
        # Every chunk is referenced exactly as many times as its count says.
        assert (
            ws.db.query(
                "SELECT c.id FROM chunks c LEFT JOIN (SELECT chunk, count(*) n FROM file_chunks"
                " GROUP BY chunk) f ON f.chunk = c.id WHERE c.refs != coalesce(f.n, 0)"
            )
            == []
        )
    ws.close()


PARALLEL_WRITER = """
import sys
from vfs import Workspace
ws = Workspace.open("shared", sys.argv[1])
worker = int(sys.argv[2])
for i in range(150):
    ws.fs.pipe(f"/w{worker}/f{i}.txt", f"{worker}:{i}".encode() * 50)
    ws.fs.pipe(f"/common/w{worker}-{i}.txt", b"x")
"""


@pytest.mark.parametrize("mode", MODES)
def test_four_processes_write_one_agent_without_locked_errors(home: Path, mode: str) -> None:
    require_mode(mode)
    Workspace.create("shared", home, mode=mode).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_WRITER, str(home), str(w)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for w in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "locked" not in err
    ws = Workspace.open("shared", home)
    fs = ws.fs
    for worker in range(4):
        files = fs.ls(f"/w{worker}", detail=False)
        assert len(files) == 150
        for i in (0, 77, 149):
            assert fs.cat(f"/w{worker}/f{i}.txt") == f"{worker}:{i}".encode() * 50
    assert len(fs.ls("/common", detail=False)) == 600
    assert ws.db.integrity_check() == []
    ws.close()


def test_forked_child_gets_its_own_connection(home: Path) -> None:
    ws = Workspace.create("forky", home)
    ws.fs.pipe("/parent", b"p")
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        try:
            ws.fs.pipe("/child", b"c")
            os._exit(0 if ws.fs.cat("/parent") == b"p" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ws.fs.cat("/child") == b"c"
    ws.fs.pipe("/parent-again", b"still fine")
    ws.close()
