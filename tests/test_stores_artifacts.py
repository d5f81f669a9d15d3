"""Artifacts: runs and outputs, chunk sharing with files, retention, and /.vfs/runs."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vfs import Workspace
from vfs.backends.runs_view import RESERVED_BASE
from vfs.cli import main


def _write(ws: Workspace, path: str, data: bytes) -> None:
    parent, name = ws.backend.resolve_parent(path)
    handle, _ = ws.backend.create(parent, name, 0o644)
    handle.write(0, data)
    handle.close()


def _chunks(ws: Workspace) -> int:
    return int(ws.db.value("SELECT COUNT(*) FROM chunks"))


def test_run_records_inputs_status_and_timings(make_workspace) -> None:
    a = make_workspace().artifacts
    run = a.start("grep", session_key="main", call_id="call-1", inputs={"pattern": "ü+"})
    assert run.status == "pending" and run.ended_at is None
    done = a.finish(run.id, "error", "exit 2", ended_at=run.started_at + 1.5)
    assert (done.status, done.error, done.duration) == ("error", "exit 2", 1.5)
    assert done.inputs == {"pattern": "ü+"} and done.call_id == "call-1"
    with pytest.raises(ValueError):
        a.finish(run.id, "weird")
    with pytest.raises(FileExistsError):
        a.start("grep", run_id=run.id)


def test_a_run_block_that_raises_is_recorded_as_an_error(make_workspace) -> None:
    a = make_workspace().artifacts
    with pytest.raises(RuntimeError), a.run("build", run_id="r1") as run:
        run.attach("log", b"compiling\n")
        raise RuntimeError("boom")
    assert a.get("r1").status == "error" and "boom" in a.get("r1").error
    assert a.read("r1", "log") == b"compiling\n"


def test_outputs_from_bytes_stream_and_iterable_read_back(make_workspace) -> None:
    a = make_workspace().artifacts
    run = a.start("t")
    big = os.urandom(200_000) + b"\0" * 100_000 + b"tail"
    a.attach(run.id, "bytes", big)
    a.attach(run.id, "stream", io.BytesIO(big))
    a.attach(run.id, "pieces", (big[i : i + 777] for i in range(0, len(big), 777)))
    a.attach(run.id, "empty", b"")
    outs = {o.name: o for o in a.outputs(run.id)}
    assert {n: o.size for n, o in outs.items()} == {
        "bytes": len(big), "stream": len(big), "pieces": len(big), "empty": 0
    }  # fmt: skip
    assert len({outs[n].digest for n in ("bytes", "stream", "pieces")}) == 1
    for name in ("bytes", "stream", "pieces"):
        assert a.read(run.id, name) == big
    with a.open(run.id, "bytes") as stream:
        stream.seek(199_990)
        assert stream.read(20) == big[199_990:200_010]
    assert a.read(run.id, "empty") == b""
    with pytest.raises(FileNotFoundError):
        a.read(run.id, "nope")


def test_equal_outputs_are_stored_once(make_workspace) -> None:
    ws = make_workspace()
    data = os.urandom(150_000)
    run = ws.artifacts.start("t")
    ws.artifacts.attach(run.id, "a", data)
    stored = _chunks(ws)
    ws.artifacts.attach(run.id, "b", data)
    assert _chunks(ws) == stored


def test_attaching_a_file_in_sqlite_mode_shares_its_chunks(make_workspace) -> None:
    ws = make_workspace("sqlite")
    data = os.urandom(300_000)
    _write(ws, "/report.bin", data)
    stored = _chunks(ws)
    run = ws.artifacts.start("t")
    out = ws.artifacts.attach_file(run.id, "report", "/report.bin")
    assert _chunks(ws) == stored  # no new chunk: the file's are referenced
    assert out.digest == ws.backend.checksum(ws.backend.resolve("/report.bin").ino)
    assert out.source == "/report.bin"
    assert ws.artifacts.read(run.id, "report") == data


@pytest.mark.parametrize("mode", ["disk", "hybrid"])
def test_attaching_a_file_in_other_modes_reads_it_through_the_backend(make_workspace, mode) -> None:
    ws = make_workspace(mode)
    data = os.urandom(100_000)
    _write(ws, "/out.bin", data)
    run = ws.artifacts.start("t")
    ws.artifacts.attach_file(run.id, "out", "/out.bin")
    assert ws.artifacts.read(run.id, "out") == data
    with pytest.raises(IsADirectoryError):
        ws.artifacts.attach_file(run.id, "root", "/")


def test_list_filters_by_tool_session_status_and_time(make_workspace) -> None:
    a = make_workspace().artifacts
    a.finish(a.start("grep", run_id="r1", session_key="s1", started_at=100).id)
    a.start("sed", run_id="r2", session_key="s1", started_at=200)
    a.finish(a.start("grep", run_id="r3", session_key="s2", started_at=300).id, "error")
    assert [r.id for r in a.list()] == ["r3", "r2", "r1"]
    assert [r.id for r in a.list(tool="grep")] == ["r3", "r1"]
    assert [r.id for r in a.list(session_key="s1")] == ["r2", "r1"]
    assert [r.id for r in a.list(status="pending")] == ["r2"]
    assert [r.id for r in a.list(since=150, until=300)] == ["r2"]
    assert [r.id for r in a.list(limit=1)] == ["r3"]


def test_gc_frees_chunks_only_when_nothing_references_them(make_workspace) -> None:
    ws = make_workspace("sqlite")
    shared = os.urandom(100_000)
    _write(ws, "/keep.bin", shared)
    old = ws.artifacts.start("t", run_id="old", started_at=1)
    ws.artifacts.attach_file(old.id, "shared", "/keep.bin")
    ws.artifacts.attach(old.id, "own", os.urandom(100_000))
    ws.artifacts.finish(old.id)
    before = _chunks(ws)
    dry = ws.artifacts.gc(older_than=60, dry_run=True)
    assert dry.runs == 1 and _chunks(ws) == before  # a dry run changes nothing
    report = ws.artifacts.gc(older_than=60)
    assert (report.runs, report.outputs) == (1, 2)
    assert report.chunks_freed == 2  # only the output's own chunks: 100 kB in 64 kB chunks
    assert _chunks(ws) == before - 2
    handle = ws.backend.open(ws.backend.resolve("/keep.bin").ino)
    assert handle.read(0, 200_000) == shared  # the file still has its chunks
    handle.close()
    with pytest.raises(FileNotFoundError):
        ws.artifacts.get("old")
    # Once the file goes too, nothing references its chunks.
    ws.backend.unlink(1, "keep.bin")
    assert _chunks(ws) == 0


def test_gc_policies_keep_last_and_size_budget_spare_pending_runs(make_workspace) -> None:
    a = make_workspace().artifacts
    for i in range(5):
        run = a.start("t", run_id=f"r{i}", started_at=1000 + i)
        a.attach(run.id, "o", os.urandom(1000))
        a.finish(run.id)
    a.start("t", run_id="pending", started_at=1)
    assert a.gc(keep_last=3).runs == 2
    assert sorted(r.id for r in a.list()) == ["pending", "r2", "r3", "r4"]
    assert a.gc(max_bytes=1500).runs == 2
    assert sorted(r.id for r in a.list()) == ["pending", "r4"]
    assert a.gc(older_than=10, now=2000).runs == 2  # pending runs go only by age
    assert a.list() == []


def test_artifacts_are_read_only_files_under_the_reserved_path(make_workspace) -> None:
    ws = make_workspace("sqlite")
    run = ws.artifacts.start("t", run_id="r1")
    ws.artifacts.attach(run.id, "out.txt", b"hello artifacts")
    backend = ws.backend
    attr = backend.resolve("/.vfs/runs/r1/out.txt")
    assert attr.ino >= RESERVED_BASE and attr.size == 15 and attr.is_file
    handle = backend.open(attr.ino)
    assert handle.read(6, 100) == b"artifacts"
    handle.close()
    assert [n for n, _, _ in backend.readdir(backend.resolve("/.vfs/runs").ino)] == ["r1"]
    assert [n for n, _, _ in backend.readdir(backend.resolve("/.vfs/runs/r1").ino)] == ["out.txt"]
    assert ".vfs" not in [n for n, _, _ in backend.readdir(1)]
    runs_dir = backend.resolve("/.vfs/runs/r1").ino
    for attempt in (
        lambda: backend.open(attr.ino, os.O_WRONLY),
        lambda: backend.create(runs_dir, "new", 0o644),
        lambda: backend.unlink(runs_dir, "out.txt"),
        lambda: backend.setattr(attr.ino, mode=0o777),
        lambda: backend.mkdir(1, ".vfs", 0o755),
        lambda: backend.rename(runs_dir, "out.txt", 1, "stolen"),
    ):
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    with pytest.raises(FileNotFoundError):
        backend.resolve("/.vfs/runs/nope")
    # Copying an artifact out makes an ordinary file.
    backend.copy_file(attr.ino, 1, "copy.txt")
    copy = backend.open(backend.resolve("/copy.txt").ino)
    assert copy.read(0, 100) == b"hello artifacts"
    copy.close()


@pytest.mark.parametrize("mode", ["sqlite", "disk", "hybrid"])
def test_artifacts_are_readable_through_fsspec(make_workspace, mode) -> None:
    ws = make_workspace(mode)
    run = ws.artifacts.start("t", run_id="r1")
    ws.artifacts.attach(run.id, "data.json", b'{"ok": true}')
    fs = ws.fs
    assert fs.cat("/.vfs/runs/r1/data.json") == b'{"ok": true}'
    assert fs.ls("/.vfs/runs", detail=False) == ["/.vfs/runs/r1"]
    assert fs.info("/.vfs/runs/r1/data.json")["size"] == 12
    with pytest.raises(OSError) as caught:
        fs.pipe("/.vfs/runs/r1/data.json", b"overwrite")
    assert caught.value.errno == errno.EROFS
    assert fs.cat("/.vfs/runs/r1/data.json") == b'{"ok": true}'


def test_artifacts_are_readable_through_the_fuse_mount(home: Path, tmp_path: Path) -> None:
    from tests.test_mount_support import FUSE_MISSING, mount_agent

    if FUSE_MISSING:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is absent")
    with Workspace.create("alice", home) as ws:
        run = ws.artifacts.start("t", run_id="r1")
        ws.artifacts.attach(run.id, "log.txt", b"line 1\nline 2\n")
    with mount_agent(home, tmp_path / "mnt") as mounted:
        path = mounted.root / ".vfs" / "runs" / "r1" / "log.txt"
        assert path.read_bytes() == b"line 1\nline 2\n"
        assert os.listdir(mounted.root / ".vfs" / "runs" / "r1") == ["log.txt"]
        with pytest.raises(OSError) as caught:
            path.write_bytes(b"no")
        assert caught.value.errno == errno.EROFS


def test_artifacts_cli_lists_shows_gets_and_collects(make_workspace, tmp_path: Path) -> None:
    a = make_workspace().artifacts
    run = a.start("grep", run_id="r1", started_at=1)
    a.attach(run.id, "out", b"found it\n")
    a.finish(run.id, ended_at=2)
    runner = CliRunner()
    listed = runner.invoke(main, ["artifacts", "ls", "alice", "--tool", "grep", "--json"])
    assert [r["id"] for r in json.loads(listed.output)] == ["r1"]
    shown = runner.invoke(main, ["artifacts", "show", "alice", "r1", "--json"])
    assert json.loads(shown.output)["outputs"][0]["name"] == "out"
    got = runner.invoke(main, ["artifacts", "get", "alice", "r1", "out"])
    assert got.output == "found it\n"
    target = tmp_path / "out.txt"
    runner.invoke(main, ["artifacts", "get", "alice", "r1", "out", "-o", str(target)])
    assert target.read_bytes() == b"found it\n"
    missing = runner.invoke(main, ["artifacts", "show", "alice", "nope"])
    assert missing.exit_code == 1 and "no such run" in missing.output
    collected = runner.invoke(main, ["gc", "alice", "--older-than", "1d", "--json"])
    assert json.loads(collected.output)["runs"] == 1
    assert runner.invoke(main, ["gc", "alice", "--older-than", "soon"]).exit_code == 2


@pytest.mark.parametrize("mode", ["sqlite", "disk", "hybrid"])
def test_whole_file_paths_reach_artifacts_and_leave_similar_names_alone(
    make_workspace, mode
) -> None:
    ws = make_workspace(mode)
    run = ws.artifacts.start("t", run_id="r1")
    ws.artifacts.attach(run.id, "out.txt", b"artifact")
    backend = ws.backend
    assert backend.read_file("/.vfs/runs/r1/out.txt") == b"artifact"
    backend.mkdir(1, ".vfsx", 0o755)
    parent, name = backend.resolve_parent("/.vfsx/file")
    backend.write_file(parent, name, b"ordinary")
    assert backend.read_file("/.vfsx/file") == b"ordinary"
    runs_dir = backend.resolve("/.vfs/runs/r1").ino
    with pytest.raises(OSError) as caught:
        backend.write_file(runs_dir, "new", b"x")
    assert caught.value.errno == errno.EROFS
    assert backend.resolve_parent("/.vfs/runs/r1/out.txt") == (runs_dir, "out.txt")
