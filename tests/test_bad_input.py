"""Bad input gets a clear error and changes nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import small_tmpfs
from vfs import Workspace
from vfs.backends.names import InvalidAgentId, check_agent_id
from vfs.fs import AgentFileSystem


def snapshot(fs: AgentFileSystem) -> dict[str, bytes | None]:
    """Every path in the workspace with its content (None for directories)."""
    return {
        path: (None if fs.isdir(path) else fs.cat(path)) for path in fs.find("/", withdirs=True)
    }


@pytest.fixture
def seeded(home: Path) -> AgentFileSystem:
    ws = Workspace.create("alice", home)
    fs = ws.fs
    fs.pipe("/keep/a.txt", b"alpha")
    fs.pipe("/keep/b.txt", b"beta")
    return fs


@given(st.text(max_size=80))
def test_agent_ids_are_validated_before_any_path_use(agent: str) -> None:
    valid = (
        bool(agent)
        and (agent[0].isascii() and agent[0].isalnum())
        and len(agent) <= 64
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in agent)
    )
    if valid:
        assert check_agent_id(agent) == agent
    else:
        with pytest.raises(InvalidAgentId, match="invalid agent id"):
            check_agent_id(agent)


@pytest.mark.parametrize("agent", ["../escape", "a/b", "", ".hidden", "-x", "a" * 65, "x\0y", "é"])
def test_invalid_agent_id_creates_nothing(home: Path, agent: str) -> None:
    with pytest.raises(InvalidAgentId):
        Workspace.create(agent, home)
    assert not (home / "agents").exists() or not any((home / "agents").iterdir())
    assert not (home.parent / "escape").exists()


@pytest.mark.parametrize(
    "path",
    ["/../outside", "a/../../b", "/keep/../../x", "keep/\0evil", "/keep/a.txt\0", "x/" + "n" * 300],
)
def test_traversal_nul_and_long_names_are_refused_without_changes(
    seeded: AgentFileSystem, path: str
) -> None:
    before = snapshot(seeded)
    with pytest.raises(OSError) as info:
        seeded.pipe(path, b"payload")
    assert info.value.errno in (errno.EACCES, errno.EINVAL, errno.ENAMETOOLONG)
    with pytest.raises(OSError):
        seeded.cat(path)
    with pytest.raises(OSError):
        seeded.rm(path)
    assert snapshot(seeded) == before


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from(["..", ".", "", "a", "keep", "b.txt", "\0", "é", "//"]), max_size=6)
)
def test_any_path_spelling_stays_inside_the_workspace(
    seeded: AgentFileSystem, parts: list[str]
) -> None:
    path = "/".join(parts)
    before = snapshot(seeded)
    try:
        seeded.pipe(path + "/new.txt", b"x")
    except OSError as exc:
        assert exc.errno in (errno.EACCES, errno.EINVAL, errno.ENOTDIR, errno.EEXIST, errno.EISDIR)
        assert snapshot(seeded) == before
    else:
        # It landed inside the workspace, under a name with no '..' or NUL in it.
        after = snapshot(seeded)
        added = set(after) - set(before)
        assert added and all(".." not in p.split("/") and "\0" not in p for p in added)
        seeded.rm(sorted(added, key=len)[0], recursive=True)


def test_symlinks_pointing_out_are_never_followed(seeded: AgentFileSystem, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    seeded.symlink(str(secret), "/abs-link")
    seeded.symlink("../../../../../../" + str(secret), "/rel-link")
    seeded.symlink("keep/../../outside", "/sneaky")
    for link in ("/abs-link", "/rel-link", "/sneaky"):
        with pytest.raises(PermissionError, match="outside the workspace"):
            seeded.cat(link)
        with pytest.raises(PermissionError):
            seeded.pipe(link, b"overwrite")
        with pytest.raises(PermissionError):
            seeded.pipe(link + "/child", b"x")
    assert secret.read_text() == "host secret"
    assert seeded.info("/abs-link")["type"] == "other"


def test_corrupt_database_gives_a_clear_error_and_is_left_alone(home: Path) -> None:
    ws = Workspace.create("alice", home)
    ws.fs.pipe("/x", b"1")
    db_path = ws.record.db_path
    ws.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    garbage = b"this is not a database file" * 100
    db_path.write_bytes(garbage)
    with pytest.raises(OSError, match="not a database"):
        Workspace.open("alice", home)
    assert db_path.read_bytes() == garbage


def test_locked_database_waits_for_the_writer_then_succeeds(home: Path) -> None:
    ws = Workspace.create("alice", home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import apsw, sys, time\n"
            f"c = apsw.Connection({str(ws.record.db_path)!r})\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(1.5)\n"
            "c.execute('COMMIT')\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    ws.fs.pipe("/after-lock", b"written")  # blocks until the holder commits, no error
    assert holder.wait(timeout=30) == 0
    assert ws.fs.cat("/after-lock") == b"written"
    ws.close()


def test_lock_held_past_the_busy_timeout_is_a_clear_ebusy(home: Path) -> None:
    from vfs.backends.db import Database

    ws = Workspace.create("alice", home)
    impatient = Database(ws.record.db_path, "agent", busy_timeout=0.2)
    with ws.db.write(), pytest.raises(OSError) as info, impatient.write():
        pass
    assert info.value.errno == errno.EBUSY
    assert "busy" in str(info.value)
    ws.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, so that a real ENOSPC happens quickly."""
    with small_tmpfs(tmp_path / "tiny", "3m") as mountpoint:
        yield mountpoint


def test_full_disk_is_enospc_and_keeps_committed_files(tiny_disk: Path) -> None:
    ws = Workspace.create("alice", tiny_disk / "home")
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(bytes(1 << 20))
    fs = ws.fs
    fs.pipe("/kept.txt", b"committed before the disk filled")
    with pytest.raises(OSError) as info:
        for i in range(100):
            fs.pipe(f"/fill/{i}.bin", os.urandom(256 * 1024))
    assert info.value.errno == errno.ENOSPC
    assert fs.cat("/kept.txt") == b"committed before the disk filled"
    assert ws.db.integrity_check() == []
    # Once space is freed on the host, the workspace is writable again and intact.
    ballast.unlink()
    fs.rm("/fill", recursive=True)
    fs.pipe("/after.txt", b"ok")
    assert ws.db.integrity_check() == []
    ws.close()
