"""`vfs migrate`: importing a legacy sessions directory safely.

Each test builds a realistic legacy directory: a sessions map with many
fields, branched transcripts with compactions and every entry type, unicode
and large tool results, and then damages it in the ways real directories are
damaged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import xxhash
from click.testing import CliRunner

from vfs import Workspace
from vfs.cli import main
from vfs.legacy import import_legacy

UNICODE = 'naïve café — 日本語 🚀 עברית e\u0301 \u2028 tab\t quote" back\\slash'


def _session_entry(session_id: str, updated: int, i: int) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "updatedAt": updated,
        "systemSent": True,
        "abortedLastRun": False,
        "chatType": "direct",
        "model": "claude-x",
        "contextTokens": 200000,
        "totalTokens": 12345 + i,
        "compactionCount": i,
        "label": f"{UNICODE} #{i}",
        "deliveryContext": {"channel": "telegram", "to": f"user:{i}", "accountId": None},
        "origin": {"provider": "telegram", "surface": "dm", "from": {"id": 10**15 + i}},
        "skillsSnapshot": {"prompt": "You can…", "skills": [{"name": "web", "env": []}]},
        "usage": {"input": 1.5e3, "output": 0.25, "cost": 1e-9},
    }


def _transcript(session_id: str, i: int, big: bool = False) -> list[dict[str, Any]]:
    ts = "2025-01-0{}T10:00:{:02d}.000Z"
    lines: list[dict[str, Any]] = [
        {"type": "session", "version": 3, "id": session_id, "timestamp": ts.format(1, 0), "cwd": f"/home/{UNICODE}"}
    ]  # fmt: skip

    def add(entry_type: str, parent: str | None, **fields: Any) -> str:
        entry_id = f"{session_id[:4]}{len(lines):04x}"
        lines.append(
            {"type": entry_type, "id": entry_id, "parentId": parent,
             "timestamp": ts.format(1 + i % 8, len(lines) % 60), **fields}
        )  # fmt: skip
        return entry_id

    root = add("message", None, message={"role": "user", "content": f"hello {UNICODE}"})
    a1 = add(
        "message",
        root,
        message={
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "thinkingSignature": "sig=="},
                {"type": "text", "text": "Let me look."},
                {"type": "toolCall", "id": "call_1", "name": "read", "arguments": {"path": "/x"}},
            ],
            "usage": {"input": 10, "output": 5, "cacheRead": 0},
            "stopReason": "toolUse",
        },
    )
    result = "x" * (1_500_000 if big else 2000) + UNICODE
    t1 = add(
        "message",
        a1,
        message={"role": "toolResult", "toolCallId": "call_1", "toolName": "read",
                 "content": [{"type": "text", "text": result}], "isError": False},
    )  # fmt: skip
    m1 = add("model_change", t1, provider="anthropic", modelId="claude-y")
    k1 = add("thinking_level_change", m1, thinkingLevel="high")
    # A branch: a second answer to the first question.
    b1 = add(
        "message", root, message={"role": "assistant", "content": [{"type": "text", "text": "alt"}]}
    )
    add("branch_summary", b1, fromId=k1, summary="tried reading /x", details={"files": ["/x"]})
    c1 = add(
        "compaction",
        k1,
        summary="Earlier: greeting, read /x.",
        firstKeptEntryId=t1,
        tokensBefore=50123,
    )
    add("custom", c1, customType="ext-state", data={"n": [1, 2, {"deep": None}]})
    add("label", c1, targetId=root, label="start ⭐")
    add("session_info", c1, name=f"session {i}")
    add("message", c1, message={"role": "user", "content": [{"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}]})  # fmt: skip
    return lines


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def build_legacy_dir(root: Path, sessions: int = 4) -> dict[str, Any]:
    """A legacy sessions directory; returns what it holds, as JSON values."""
    root.mkdir(parents=True, exist_ok=True)
    entries, transcripts = {}, {}
    for i in range(sessions):
        sid = f"{i:08x}-aaaa-bbbb-cccc-{i:012x}"
        key = f"agent:main:telegram:dm:{i}" if i else "agent:main:main"
        entries[key] = _session_entry(sid, 1_700_000_000_000 + i * 1000, i)
        transcripts[sid] = _transcript(sid, i, big=i == 1)
        (root / f"{sid}.jsonl").write_bytes(_jsonl(transcripts[sid]))
    (root / "sessions.json").write_text(json.dumps(entries, indent=2, ensure_ascii=False), "utf-8")
    return {"sessions": entries, "transcripts": transcripts}


def exported(ws: Workspace, sid: str) -> list[Any]:
    return [json.loads(line) for line in ws.transcripts.jsonl_lines(sid)]


def snapshot(path: Path) -> tuple[bytes, int] | tuple[str, int]:
    info = os.lstat(path)
    data: Any = path.read_bytes() if path.is_file() else "special"
    return data, info.st_mtime_ns


def migrate(*args: str) -> Any:
    return CliRunner().invoke(main, ["migrate", *args])


@pytest.fixture
def legacy(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    source = tmp_path / "legacy-sessions"
    return source, build_legacy_dir(source)


def test_import_is_lossless_and_archives_verified_sources(home: Path, legacy) -> None:
    source, content = legacy
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    with Workspace.open("alice", home) as ws:
        for key, entry in content["sessions"].items():
            row = ws.sessions.get(key)
            assert row is not None and row.fields == entry
            assert row.updated_at == entry["updatedAt"]
        for sid, lines in content["transcripts"].items():
            assert exported(ws, sid) == lines  # header line included
        archived = list((ws.directory / "archive").rglob("*"))
    assert os.listdir(source) == []
    names = sorted(p.name for p in archived if p.is_file())
    assert names == sorted(["sessions.json", *(f"{sid}.jsonl" for sid in content["transcripts"])])
    first_sid = next(iter(content["transcripts"]))
    assert next(p for p in archived if p.name == f"{first_sid}.jsonl").read_bytes() == _jsonl(
        content["transcripts"][first_sid]
    )


def test_branches_in_an_imported_transcript_are_walkable(home: Path, legacy) -> None:
    source, content = legacy
    assert migrate("alice", str(source)).exit_code == 0
    sid, lines = next(iter(content["transcripts"].items()))
    with Workspace.open("alice", home) as ws:
        head = ws.transcripts.head(sid)
        assert head == lines[-1]["id"]
        chain = [e.event["type"] for e in ws.transcripts.branch(sid)]
        assert chain == ["message", "message", "message", "model_change", "thinking_level_change",
                         "compaction", "message"]  # fmt: skip
        alt = ws.transcripts.branch(sid, lines[6]["id"])
        assert [e.id for e in alt] == [lines[1]["id"], lines[6]["id"]]


def test_second_run_imports_nothing_new(home: Path, legacy) -> None:
    source, _ = legacy
    first = migrate("alice", str(source), "--keep-sources", "--json")
    assert json.loads(first.stdout)["imported"] > 0
    before = {p.name: snapshot(p) for p in source.iterdir()}
    second = migrate("alice", str(source), "--keep-sources")
    assert second.exit_code == 0
    assert "nothing new to import" in second.stdout
    again = migrate("alice", str(source), "--keep-sources", "--json")
    report = json.loads(again.stdout)
    assert report["imported"] == 0 and report["status"] == "nothing-new"
    assert all(s["status"] == "unchanged" for s in report["sources"])
    assert {p.name: snapshot(p) for p in source.iterdir()} == before  # --keep-sources moves nothing


def test_newer_rows_in_the_database_survive_older_files(home: Path, legacy) -> None:
    source, content = legacy
    newer_key, older_key = list(content["sessions"])[:2]
    with Workspace.create("alice", home) as ws:
        ws.sessions.patch(
            newer_key, {"sessionId": "edited", "note": "newer"}, updated_at=1_800_000_000_000
        )
        ws.sessions.patch(older_key, {"sessionId": "stale"}, updated_at=1)
        sid = content["sessions"][newer_key]["sessionId"]
        existing = content["transcripts"][sid][1]
        from vfs.stores.transcripts import ImportedEntry

        ws.transcripts.import_entries(
            sid, [ImportedEntry(existing["id"], None, {**existing, "edited": True})]
        )
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    sessions_source = next(s for s in report["sources"] if s["kind"] == "sessions")
    assert (sessions_source["imported"], sessions_source["kept"]) == (
        len(content["sessions"]) - 1,
        1,
    )
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.get(newer_key).fields == {"sessionId": "edited", "note": "newer"}
        assert ws.sessions.get(older_key).fields == content["sessions"][older_key]
        kept = ws.transcripts.get(sid, existing["id"])
        assert kept.event["edited"] is True  # an event already present is kept as it was
        assert ws.transcripts.count(sid) == len(content["transcripts"][sid]) - 1


def test_dry_run_writes_nothing(home: Path, legacy) -> None:
    source, _ = legacy
    Workspace.create("alice", home).close()
    before = {p.name: snapshot(p) for p in source.iterdir()}
    result = migrate("alice", str(source), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["imported"] > 0 and report["run_id"] is None
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.count() == 0 and ws.transcripts.sessions() == []
        assert not (ws.directory / "archive").exists()
        assert ws.registry.db.value("SELECT COUNT(*) FROM migration_runs") == 0
    assert {p.name: snapshot(p) for p in source.iterdir()} == before


def test_malformed_sessions_file_is_left_in_place_and_transcripts_still_import(
    home: Path, legacy
) -> None:
    source, content = legacy
    bad = source / "sessions.json"
    bad.write_bytes(bad.read_bytes()[:-40])  # cut off mid-object
    before = snapshot(bad)
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    failed = [s for s in report["sources"] if s["status"] == "failed"]
    assert [Path(s["path"]).name for s in failed] == ["sessions.json"]
    assert "invalid JSON" in failed[0]["error"]
    assert snapshot(bad) == before
    assert os.listdir(source) == ["sessions.json"]
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.count() == 0
        for sid, lines in content["transcripts"].items():
            assert exported(ws, sid) == lines


def test_sessions_file_with_a_non_object_entry_keeps_the_good_entries(home: Path, legacy) -> None:
    source, content = legacy
    entries = dict(content["sessions"])
    entries["agent:main:broken"] = "not an object"
    (source / "sessions.json").write_text(json.dumps(entries), "utf-8")
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 1
    with Workspace.open("alice", home) as ws:
        assert ws.sessions.count() == len(content["sessions"])
    assert (source / "sessions.json").exists()


def test_truncated_transcript_keeps_its_complete_lines_and_stays_in_place(
    home: Path, legacy
) -> None:
    source, content = legacy
    sid, lines = list(content["transcripts"].items())[2]
    path = source / f"{sid}.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # the last line loses its end and newline
    before = snapshot(path)
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    failed = next(s for s in report["sources"] if s["status"] == "failed")
    assert Path(failed["path"]).name == path.name and "truncated" in failed["error"]
    assert failed["imported"] == len(lines) - 2  # every complete line except the header
    assert snapshot(path) == before
    assert sorted(os.listdir(source)) == [path.name]
    with Workspace.open("alice", home) as ws:
        assert exported(ws, sid) == lines[:-1]
    # Once the file is whole again, the rest imports and the file is archived.
    path.write_bytes(data)
    again = json.loads(migrate("alice", str(source), "--json").stdout)
    assert again["imported"] == 1 and again["status"] == "ok"
    with Workspace.open("alice", home) as ws:
        assert exported(ws, sid) == lines


def test_unreadable_sources_are_reported_and_left_exactly_where_they_were(
    home: Path, legacy
) -> None:
    source, content = legacy
    (source / "dir-instead.jsonl").mkdir()
    (source / "dir-instead.jsonl" / "inner").write_text("x")
    os.mkfifo(source / "pipe.jsonl")
    bad_utf8 = source / "latin1.jsonl"
    bad_utf8.write_bytes(
        b'{"type":"session","version":3,"id":"latin1","timestamp":"t","cwd":"/"}\n'
        b'{"type":"message","id":"l1","parentId":null,"message":{"content":"caf\xe9"}}\n'
        b'{"type":"message","id":"l2","parentId":null,"message":{"content":"ok"}}\n'
    )
    watched = ["dir-instead.jsonl", "pipe.jsonl", "latin1.jsonl"]
    before = {name: snapshot(source / name) for name in watched}
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    status = {Path(s["path"]).name: s for s in report["sources"]}
    assert {n for n, s in status.items() if s["status"] == "failed"} == set(watched)
    assert "not a regular file" in status["pipe.jsonl"]["error"]
    assert "invalid UTF-8" in status["latin1.jsonl"]["error"]
    assert {name: snapshot(source / name) for name in watched} == before
    assert sorted(os.listdir(source)) == sorted(watched)  # the good files were archived
    with Workspace.open("alice", home) as ws:
        assert [e.id for e in ws.transcripts.events("latin1")] == ["l2"]
        assert ws.sessions.count() == len(content["sessions"])
    assert "failed" in migrate("alice", str(source)).stdout


def test_every_run_is_audited_with_per_source_hashes(home: Path, legacy) -> None:
    source, _ = legacy
    expected = {
        p.name: (p.stat().st_size, xxhash.xxh3_128_hexdigest(p.read_bytes()))
        for p in source.iterdir()
    }
    migrate("alice", str(source), "--keep-sources")
    migrate("alice", str(source), "--keep-sources")
    history = CliRunner().invoke(main, ["migrate", "--history", "alice", "--json"])
    runs = json.loads(history.stdout)
    assert [r["status"] for r in runs] == ["nothing-new", "ok"]
    for run in runs:
        got = {Path(s["path"]).name: (s["size"], s["hash"]) for s in run["sources"]}
        assert got == expected
    text = CliRunner().invoke(main, ["migrate", "--history", "alice"])
    assert "xxh3=" in text.stdout and "nothing-new" in text.stdout


def test_import_through_the_api_reports_progress(home: Path, legacy) -> None:
    source, _ = legacy
    seen: list[int] = []
    with Workspace.create("alice", home) as ws:
        report = import_legacy(ws, source, keep_sources=True, progress=seen.append)
    assert sum(seen) == sum(p.stat().st_size for p in source.iterdir())
    assert report.status == "ok" and report.run_id is not None


def test_migrate_refuses_a_missing_directory(home: Path, tmp_path: Path) -> None:
    result = migrate("alice", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "not a legacy sessions directory" in result.output
    assert not (home / "agents" / "alice").exists()


def test_lines_that_are_not_strict_json_are_refused_not_altered(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    path = source / "odd.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"type":"session","version":3,"id":"odd","timestamp":"t","cwd":"/"}\r\n'
        b'{"type":"message","id":"n1","parentId":null,"value":NaN}\r\n'
        + b"[" * 100_000
        + b"\r\n"
        + b'{"type":"message","id":"n2","parentId":null,"value":1e400}\r\n'
        + b'{"type":"message","id":"n3","parentId":null,"value":1.5e300}\r\n'
    )
    before = snapshot(path)
    result = migrate("alice", str(source), "--json")
    assert result.exit_code == 1
    assert snapshot(path) == before
    with Workspace.open("alice", home) as ws:
        assert ws.transcripts.header("odd")["id"] == "odd"  # a leading BOM is not part of the JSON
        assert [e.event["value"] for e in ws.transcripts.events("odd")] == [1.5e300]
