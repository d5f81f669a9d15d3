"""Transcripts: single-chain appends from many processes, idempotency, branches, export."""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.stores.transcripts import ImportedEntry

PROCESSES = 8
APPENDS = 500


def _append_many(
    home: str, worker: int, count: int, start: multiprocessing.synchronize.Event
) -> None:
    ws = Workspace.open("alice", home)
    start.wait()
    for i in range(count):
        ws.transcripts.append("s", {"type": "message", "worker": worker, "i": i})
    ws.close()


def _append_keyed(home: str, keys: int, start: multiprocessing.synchronize.Event) -> None:
    ws = Workspace.open("alice", home)
    start.wait()
    for k in range(keys):
        ws.transcripts.append("s", {"type": "message", "k": k}, idempotency_key=f"key-{k}")
    ws.close()


def _run_all(target, args_per_process) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, start)) for args in args_per_process]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def test_eight_processes_appending_without_parent_form_one_chain(
    make_workspace, home: Path
) -> None:
    ws = make_workspace()
    _run_all(_append_many, [(str(home), w, APPENDS) for w in range(PROCESSES)])
    events = ws.transcripts.events("s")
    assert len(events) == PROCESSES * APPENDS
    assert len({e.id for e in events}) == len(events)
    assert len({(e.event["worker"], e.event["i"]) for e in events}) == len(events)
    # One chain: each event's parent is the event appended just before it.
    assert events[0].parent_id is None
    for previous, event in itertools.pairwise(events):
        assert event.parent_id == previous.id
        assert event.event["parentId"] == previous.id
    assert len(ws.transcripts.branch("s")) == len(events)
    # Each worker's own appends stay in its order.
    for w in range(PROCESSES):
        mine = [e.event["i"] for e in events if e.event["worker"] == w]
        assert mine == list(range(APPENDS))


def test_repeated_idempotency_keys_from_several_processes_add_one_event_each(
    make_workspace, home: Path
) -> None:
    ws = make_workspace()
    _run_all(_append_keyed, [(str(home), 40) for _ in range(6)])
    events = ws.transcripts.events("s")
    assert sorted(e.idempotency_key for e in events) == sorted(f"key-{k}" for k in range(40))
    again = ws.transcripts.append("s", {"type": "x"}, idempotency_key="key-7")
    assert again == next(e.id for e in events if e.idempotency_key == "key-7")
    assert ws.transcripts.count("s") == 40


def test_branch_follows_parent_links_from_a_leaf(make_workspace) -> None:
    t = make_workspace().transcripts
    root = t.append("s", {"type": "message", "n": 0})
    a = t.append("s", {"type": "message", "n": 1})
    b = t.append("s", {"type": "message", "n": 2}, parent_id=root)  # a fork off the root
    c = t.append("s", {"type": "message", "n": 3})  # follows the head, b
    assert [e.id for e in t.branch("s", a)] == [root, a]
    assert [e.id for e in t.branch("s")] == [root, b, c]
    assert [e.id for e in t.events("s")] == [root, a, b, c]
    assert t.head("s") == c


def test_imported_events_never_move_the_head_of_an_appended_session(make_workspace) -> None:
    t = make_workspace().transcripts
    t.import_entries("s", [ImportedEntry("l1", None, {"id": "l1"})])
    assert t.head("s") == "l1"  # nothing appended yet: the latest event
    a = t.append("s", {"type": "message"})
    t.import_entries("s", [ImportedEntry("l2", "l1", {"id": "l2", "parentId": "l1"})])
    assert t.head("s") == a
    b = t.append("s", {"type": "message"})
    assert [e.id for e in t.branch("s")] == ["l1", a, b]


def test_import_entries_refuses_an_id_given_twice_with_different_content(make_workspace) -> None:
    t = make_workspace().transcripts
    entries = [
        ImportedEntry("e1", None, {"id": "e1", "n": 1, "m": 2}, line=1),
        ImportedEntry("e1", None, {"m": 2, "id": "e1", "n": 1}, line=2),  # same object
        ImportedEntry("e1", None, {"id": "e1", "n": 9}, line=3),
    ]
    for _ in range(2):  # the same answer when the first one is already stored
        outcome = t.import_entries("s", iter(entries))
        assert outcome.conflicts == 1 and [e.line for e in outcome.first_conflicts] == [3]
    assert [e.event for e in t.events("s")] == [{"id": "e1", "n": 1, "m": 2}]


def test_append_with_unknown_parent_is_refused_and_adds_nothing(make_workspace) -> None:
    t = make_workspace().transcripts
    t.append("s", {"type": "message"})
    with pytest.raises(FileNotFoundError):
        t.append("s", {"type": "message"}, parent_id="nope")
    assert t.count("s") == 1


def test_sessions_are_separate_chains(make_workspace) -> None:
    t = make_workspace().transcripts
    a1 = t.append("a", {"type": "message"})
    b1 = t.append("b", {"type": "message"})
    a2 = t.append("a", {"type": "message"})
    assert t.get("a", a2).parent_id == a1
    assert t.get("b", b1).parent_id is None


def test_export_jsonl_writes_the_header_then_events_in_append_order(make_workspace) -> None:
    t = make_workspace().transcripts
    header = {
        "type": "session",
        "version": 3,
        "id": "s",
        "timestamp": "2024-01-01T00:00:00Z",
        "cwd": "/w",
    }
    t.import_entries(
        "s", [ImportedEntry("e1", None, {"type": "message", "id": "e1", "parentId": None})], header
    )
    e2 = t.append("s", {"type": "message", "message": {"role": "user", "content": "ünïcode ✓"}})
    out = io.StringIO()
    assert t.export_jsonl("s", out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == header
    assert lines[1] == {"type": "message", "id": "e1", "parentId": None}
    assert lines[2]["id"] == e2 and lines[2]["parentId"] == "e1"
    assert lines[2]["message"]["content"] == "ünïcode ✓"


def test_transcript_cli_shows_and_exports(make_workspace, home: Path) -> None:
    from click.testing import CliRunner

    from vfs.cli import main

    t = make_workspace().transcripts
    first = t.append("s", {"type": "message", "message": {"role": "user", "content": "hello"}})
    runner = CliRunner()
    shown = runner.invoke(main, ["transcript", "show", "alice", "s", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)[0]["id"] == first
    exported = runner.invoke(main, ["transcript", "export", "alice", "s"])
    assert json.loads(exported.output.splitlines()[0])["id"] == first
    missing = runner.invoke(main, ["transcript", "show", "alice", "nope"])
    assert missing.exit_code == 1 and "no transcript" in missing.output
