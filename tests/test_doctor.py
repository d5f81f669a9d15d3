"""vfs doctor finds injected faults, repairs what it can without losing data and
says what it cannot; vfs vacuum gives space back while the agent stays usable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw
import pytest

from tests.helpers import run_vfs
from vfs import Workspace
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry

FILE_MODES = ["sqlite", "hybrid"]


def make_agent(home: Path, tmp_path: Path, mode: str) -> Workspace:
    kwargs = {}
    if mode == "hybrid":
        (tmp_path / "lower" / "sub").mkdir(parents=True)
        (tmp_path / "lower" / "sub" / "gone.txt").write_text("lower")
        kwargs["workspace"] = tmp_path / "lower"
    ws = Workspace.create("alice", home, mode=mode, **kwargs)
    for i in range(5):
        ws.fs.pipe(f"/f{i}.txt", bytes([i + 1]) * 70_000)
    return ws


def tamper(home: Path, *statements: str) -> None:
    """Change the database behind the library's back, as a crash or a hand edit would."""
    conn = apsw.Connection(str(home / "agents" / "alice" / "agent.sqlite"))
    conn.execute("PRAGMA foreign_keys=OFF")
    for sql in statements:
        conn.execute(sql)
    conn.close()


def chunk_of(ws: Workspace, path: str) -> int:
    ino = ws.fs.info(path)["ino"]
    return int(ws.db.value("SELECT chunk FROM file_chunks WHERE ino = ? AND idx = 0", (ino,)))


def doctor(*args: str) -> tuple[int, list[dict]]:
    result = run_vfs("doctor", *args, "--json")
    return result.returncode, json.loads(result.stdout)


def test_a_healthy_home_is_one_line(home: Path, tmp_path: Path) -> None:
    make_agent(home, tmp_path, "sqlite").close()
    result = run_vfs("doctor")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok: 1 agent checked, no problems"]


@pytest.mark.parametrize("mode", FILE_MODES)
def test_doctor_repairs_injected_faults_and_keeps_every_byte_left(
    home: Path, tmp_path: Path, mode: str
) -> None:
    with make_agent(home, tmp_path, mode) as ws:
        missing, wrong_refs = chunk_of(ws, "/f1.txt"), chunk_of(ws, "/f2.txt")
        nameless = ws.fs.info("/f4.txt")["ino"]
    tamper(
        home,
        f"DELETE FROM chunks WHERE id = {missing}",  # a deleted chunk row
        f"UPDATE chunks SET refs = 9 WHERE id = {wrong_refs}",  # a wrong reference count
        "INSERT INTO chunks (hash, size, refs, data) VALUES (x'00', 1, 1, x'01')",  # an orphan
        "INSERT INTO entries (parent, name, ino) VALUES (1, 'ghost', 999999)",  # dangling entry
        "DELETE FROM entries WHERE name = 'f4.txt'",  # an inode without an entry
    )
    status, report = doctor()
    assert status == 1
    kinds = {f["kind"] for h in report for f in h["remaining"]}
    assert {
        "missing chunk", "reference count", "unreferenced chunk", "dangling entry",
        "inode without a name",
    } <= kinds  # fmt: skip
    status, report = doctor("--fix")
    assert status == 0, report
    status, report = doctor()
    assert status == 0 and not any(h["found"] for h in report)
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/f0.txt") == bytes([1]) * 70_000
        assert ws.fs.cat("/f2.txt") == bytes([3]) * 70_000
        # The file that lost its first chunk keeps the rest, and says so.
        damaged = ws.fs.cat("/f1.txt")
        assert damaged == bytes(65536) + bytes([2]) * (70_000 - 65536)
        assert ws.backend.getxattr(ws.fs.info("/f1.txt")["ino"], b"user.agentvfs.damaged")
        assert ws.fs.cat(f"/lost+found/#{nameless}") == bytes([5]) * 70_000
        assert ws.db.integrity_check() == []


@pytest.mark.parametrize("mode", FILE_MODES)
def test_corrupted_chunk_bytes_are_reported_and_marked_not_repaired(
    home: Path, tmp_path: Path, mode: str
) -> None:
    with make_agent(home, tmp_path, mode) as ws:
        rotten = chunk_of(ws, "/f3.txt")
    tamper(home, f"UPDATE chunks SET data = zeroblob(length(data)) WHERE id = {rotten}")
    status, report = doctor("--fix")
    assert status == 1
    (remaining,) = [f for h in report for f in h["remaining"]]
    assert remaining["kind"] == "damaged chunk" and remaining["detail"] == "/f3.txt"
    human = run_vfs("doctor")
    assert human.returncode == 1 and "alice: damaged chunk: /f3.txt" in human.stdout


def test_a_whiteout_over_nothing_is_removed(home: Path, tmp_path: Path) -> None:
    with make_agent(home, tmp_path, "hybrid") as ws:
        ws.fs.rm("/sub/gone.txt")
    (tmp_path / "lower" / "sub" / "gone.txt").unlink()
    status, report = doctor("alice", "--fix")
    assert status == 0
    assert any("whiteout" in action for h in report for action in h["repaired"])
    (tmp_path / "lower" / "sub" / "gone.txt").write_text("back on disk")
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/sub/gone.txt") == b"back on disk"


def test_stale_mount_records_and_leftovers_of_killed_restores_are_cleared(
    home: Path, tmp_path: Path
) -> None:
    make_agent(home, tmp_path, "sqlite").close()
    registry = Registry(home)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    MountTable(registry.db).add("alice", tmp_path, dead)
    (home / "agents" / f".restore-alice-{dead}").mkdir()
    status, report = doctor()
    assert status == 1
    assert {f["kind"] for f in report[0]["remaining"]} == {"stale mount record", "leftover"}
    status, _ = doctor("--fix")
    assert status == 0
    assert not (home / "agents" / f".restore-alice-{dead}").exists()
    assert MountTable(registry.db).stale() == []


def test_a_missing_database_is_reported_not_recreated(home: Path, tmp_path: Path) -> None:
    make_agent(home, tmp_path, "sqlite").close()
    database = home / "agents" / "alice" / "agent.sqlite"
    database.write_bytes(b"")
    status, report = doctor("--fix")
    assert status == 1
    assert [f["kind"] for h in report for f in h["remaining"]] == ["database"]
    assert database.read_bytes() == b""


@pytest.mark.parametrize("mode", ["sqlite", "disk", "hybrid"])
def test_vacuum_gives_back_the_space_of_deleted_files(
    home: Path, tmp_path: Path, mode: str
) -> None:
    with make_agent(home, tmp_path, mode) as ws:
        for i in range(40):
            ws.caches.set("agent", f"k{i}", os.urandom(100_000))
        for i in range(40):
            ws.caches.delete("agent", f"k{i}")
    result = run_vfs("vacuum", "alice", "--json")
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout)
    assert sizes["bytes_after"] < sizes["bytes_before"] - 3_000_000
    with Workspace.open("alice", home) as ws:
        assert ws.db.integrity_check() == []
        assert ws.fs.cat("/f0.txt") == bytes([1]) * 70_000
