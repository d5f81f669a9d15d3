"""`vfs migrate` run again over the same sources: after a failure, after the API
wrote, after a kill. Each case through the CLI in a real process and through
the Python API."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.helpers import run_vfs
from vfs import Workspace, schema
from vfs.backends.db import Database
from vfs.legacy import import_legacy
from vfs.state.audit import MigrationAudit
from vfs.stores.sessions import now_ms


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _cli(*args: str) -> dict[str, Any]:
    result = run_vfs("migrate", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


def _api(home: Path) -> Callable[..., dict[str, Any]]:
    def run(agent: str, source: str, *flags: str) -> dict[str, Any]:
        with Workspace.open(agent, home, create=True) as ws:
            report = import_legacy(ws, source, keep_sources="--keep-sources" in flags)
        out = report.as_dict()
        out["exit"] = 1 if report.failed else 0
        return out

    return run


@pytest.fixture(params=["cli", "api"])
def migrate(request: pytest.FixtureRequest, home: Path) -> Callable[..., dict[str, Any]]:
    return _cli if request.param == "cli" else _api(home)


# -- a conflicting duplicate line ------------------------------------------------


def test_a_conflicting_duplicate_line_fails_every_run_and_the_source_stays(
    home: Path, tmp_path: Path, migrate: Callable[..., dict[str, Any]]
) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    path = source / "dup.jsonl"
    lines = [
        {"type": "session", "version": 3, "id": "dup", "timestamp": "t", "cwd": "/"},
        {"type": "message", "id": "e1", "parentId": None, "text": "first"},
        {"type": "message", "id": "e2", "parentId": "e1", "text": "second"},
        {"type": "message", "id": "e1", "parentId": None, "text": "same id, other content"},
        {"type": "message", "id": "e2", "parentId": "e1", "text": "second"},  # an exact repeat
    ]
    path.write_bytes(_jsonl(lines))
    before = path.read_bytes(), os.stat(path).st_mtime_ns
    for _ in range(3):
        report = migrate("alice", str(source))
        assert report["exit"] == 1
        (entry,) = report["sources"]
        assert entry["status"] == "failed"
        assert "line 4: event e1 appears twice with different content" in entry["error"]
        assert entry["archived_to"] is None
        assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    with Workspace.open("alice", home) as ws:
        assert [e.event["text"] for e in ws.transcripts.events("dup")] == ["first", "second"]
    # Once the file holds one version of each line, it imports and is archived.
    path.write_bytes(_jsonl(lines[:3]))
    report = migrate("alice", str(source))
    assert report["exit"] == 0 and report["sources"][0]["archived_to"]
    assert not path.exists()


# -- a session the API wrote after an import --------------------------------------


def test_a_session_patched_after_an_import_survives_every_rerun(
    home: Path, tmp_path: Path, migrate: Callable[..., dict[str, Any]]
) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    future = now_ms() + 3_600_000  # a legacy writer whose clock runs an hour ahead
    entries = {
        "k1": {"sessionId": "s1", "updatedAt": future, "label": "legacy"},
        "k2": {"sessionId": "s2", "updatedAt": future, "label": "legacy"},
    }
    (source / "sessions.json").write_text(json.dumps(entries))
    assert migrate("alice", str(source), "--keep-sources")["exit"] == 0
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.get("k2").updated_at == future
        patched = ws.sessions.patch("k2", {"label": "api"})
        assert patched.updated_at >= future  # never backwards
        assert ws.sessions.get("k2").updated_at == patched.updated_at
    report = migrate("alice", str(source), "--keep-sources")
    assert report["exit"] == 0 and report["imported"] == 0
    # Even an entry the legacy writer changed later does not replace the API's row.
    entries["k2"] = {**entries["k2"], "updatedAt": future + 3_600_000, "label": "legacy again"}
    entries["k1"] = {**entries["k1"], "updatedAt": future + 3_600_000, "label": "legacy newer"}
    (source / "sessions.json").write_text(json.dumps(entries))
    report = migrate("alice", str(source), "--keep-sources")
    assert report["exit"] == 0
    (sessions,) = report["sources"]
    assert (sessions["imported"], sessions["kept"]) == (1, 1)
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.get("k2").fields["label"] == "api"
        assert ws.sessions.get("k2").updated_at == patched.updated_at
        # A row only an import wrote still follows the newer legacy entry.
        assert ws.sessions.get("k1").fields["label"] == "legacy newer"


# -- a transcript the API appended to --------------------------------------------


def test_an_import_never_moves_the_head_of_a_live_session(
    home: Path, tmp_path: Path, migrate: Callable[..., dict[str, Any]]
) -> None:
    with Workspace.create("alice", home) as ws:
        a = ws.transcripts.append("s1", {"type": "message", "text": "api 1"})
        b = ws.transcripts.append("s1", {"type": "message", "text": "api 2"})
    source = tmp_path / "legacy"
    source.mkdir()
    (source / "s1.jsonl").write_bytes(
        _jsonl([
            {"type": "session", "version": 3, "id": "s1", "timestamp": "t", "cwd": "/"},
            {"type": "message", "id": "l1", "parentId": None, "text": "legacy 1"},
            {"type": "message", "id": "l2", "parentId": "l1", "text": "legacy 2"},
        ])
    )  # fmt: skip
    report = migrate("alice", str(source))
    assert report["exit"] == 0 and report["imported"] == 2
    with Workspace.open("alice", home) as ws:
        assert ws.transcripts.head("s1") == b
        c = ws.transcripts.append("s1", {"type": "message", "text": "api 3"})
        assert ws.transcripts.get("s1", c).parent_id == b
        assert [e.id for e in ws.transcripts.branch("s1")] == [a, b, c]
        assert [e.id for e in ws.transcripts.branch("s1", "l2")] == ["l1", "l2"]


def test_an_imported_session_is_continued_from_its_last_line(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "legacy"
    source.mkdir()
    (source / "s1.jsonl").write_bytes(
        _jsonl([
            {"type": "message", "id": "l1", "parentId": None},
            {"type": "message", "id": "l2", "parentId": "l1"},
        ])
    )  # fmt: skip
    assert _cli("alice", str(source), "--keep-sources")["exit"] == 0
    with Workspace.open("alice", home) as ws:
        assert ws.transcripts.head("s1") == "l2"
        c = ws.transcripts.append("s1", {"type": "message"})
        assert [e.id for e in ws.transcripts.branch("s1")] == ["l1", "l2", c]
    # The legacy file grows after the API appended: the head stays the API's.
    with (source / "s1.jsonl").open("ab") as out:
        out.write(_jsonl([{"type": "message", "id": "l3", "parentId": "l2"}]))
    assert _cli("alice", str(source), "--keep-sources")["imported"] == 1
    with Workspace.open("alice", home) as ws:
        assert ws.transcripts.head("s1") == c


# -- a killed run -------------------------------------------------------------------


def _legacy_dir(root: Path, transcripts: int) -> None:
    root.mkdir()
    entries = {f"k{i}": {"sessionId": f"s{i}", "updatedAt": 1000 + i} for i in range(transcripts)}
    (root / "sessions.json").write_text(json.dumps(entries))
    for i in range(transcripts):
        lines = [{"type": "message", "id": f"e{n}", "parentId": None, "n": n} for n in range(50)]
        (root / f"s{i}.jsonl").write_bytes(_jsonl(lines))


def _history() -> list[dict[str, Any]]:
    result = run_vfs("migrate", "--history", "alice", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("done", [1, 3])
def test_a_killed_run_keeps_its_per_source_audit_and_is_marked_interrupted(
    home: Path, tmp_path: Path, done: int
) -> None:
    source = tmp_path / "legacy"
    _legacy_dir(source, transcripts=4)
    killed = run_vfs("migrate", "alice", str(source), kill_after=done)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(os.listdir(source))
    assert len(left) == 5 - done
    (run,) = _history()
    # Shown as interrupted (its process is gone), recorded so by the next run.
    assert run["status"] == "interrupted" and run["finished_at"] is None
    # Every source the killed run moved is in its audit, with where it went.
    assert len(run["sources"]) == done
    for entry in run["sources"]:
        assert entry["status"] == "imported"
        assert Path(entry["path"]).name not in left
        assert Path(entry["archived_to"]).is_file()
    rerun = run_vfs("migrate", "alice", str(source), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert os.listdir(source) == []
    newest, old = _history()
    assert old["id"] == run["id"] and old["status"] == "interrupted"
    assert old["finished_at"] is not None
    assert newest["status"] == "ok" and len(newest["sources"]) == 5 - done
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.count() == 4
        assert all(ws.transcripts.count(f"s{i}") == 50 for i in range(4))


def test_a_running_import_of_a_live_process_is_not_marked_interrupted(
    home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "legacy"
    _legacy_dir(source, transcripts=1)
    with Workspace.create("alice", home) as ws:
        audit = MigrationAudit(ws.registry.db)
        live = audit.start("alice", str(source), keep_sources=True)  # this process: alive
        import_legacy(ws, source)
        runs = {r["id"]: r["status"] for r in audit.history("alice")}
    assert runs[live] == "running"


def test_runs_audited_before_pids_were_recorded_survive_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old = apsw.Connection(str(path))
    for version, _, sql in schema.migrations("state"):
        if version <= 3:  # the audit tables before runs recorded their pid
            old.execute(sql)
    old.execute(
        "PRAGMA user_version=3;"
        "INSERT INTO migration_runs (agent, source_dir, started_at, status)"
        " VALUES ('alice', '/src', 1.0, 'ok'), ('alice', '/src', 2.0, 'running');"
        "INSERT INTO migration_sources (run, path, kind, status)"
        " VALUES (1, '/src/a.jsonl', 'transcript', 'imported')"
    )
    old.close()
    db = Database(path, "state")
    audit = MigrationAudit(db)
    runs = audit.history("alice")
    assert [(r["id"], r["status"]) for r in runs] == [(2, "interrupted"), (1, "ok")]
    assert [s["path"] for s in runs[1]["sources"]] == ["/src/a.jsonl"]
    assert audit.mark_interrupted("alice") == [2]
    assert db.integrity_check() == []


@pytest.mark.parametrize("mode", ["sqlite", "disk", "hybrid"])
def test_rerun_rules_hold_in_every_mode(make_workspace, tmp_path: Path, mode: str) -> None:
    ws = make_workspace(mode)
    source = tmp_path / "legacy"
    source.mkdir()
    future = now_ms() + 3_600_000
    (source / "sessions.json").write_text(
        json.dumps({"k": {"sessionId": "s", "updatedAt": future, "label": "legacy"}})
    )
    (source / "s.jsonl").write_bytes(_jsonl([{"type": "message", "id": "l1", "parentId": None}]))
    (source / "dup.jsonl").write_bytes(
        _jsonl([{"id": "d", "n": 1}, {"id": "d", "n": 2}])  # one id, two contents
    )
    assert import_legacy(ws, source, keep_sources=True).failed
    ws.sessions.patch("k", {"label": "api"})
    a = ws.transcripts.append("s", {"type": "message"})
    (source / "s.jsonl").write_bytes(
        _jsonl([
            {"type": "message", "id": "l1", "parentId": None},
            {"type": "message", "id": "l2", "parentId": "l1"},
        ])
    )  # fmt: skip
    report = import_legacy(ws, source)
    assert [Path(s.path).name for s in report.failed] == ["dup.jsonl"]
    assert sorted(os.listdir(source)) == ["dup.jsonl"]
    assert ws.sessions.get("k").fields["label"] == "api"
    assert ws.sessions.get("k").updated_at >= future
    assert ws.transcripts.head("s") == a
