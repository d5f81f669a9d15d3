"""Sessions: field-level patches, lossless unknown fields, filters, concurrent patchers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from vfs import Workspace
from vfs.stores.sessions import now_ms


def test_patch_changes_only_the_named_fields(make_workspace) -> None:
    s = make_workspace().sessions
    s.patch("k", {"sessionId": "s1", "model": "a", "nested": {"deep": [1, {"x": None}]}})
    after = s.patch("k", {"model": "b"}, unset=["nested"])
    assert after.fields == {"sessionId": "s1", "model": "b"}
    assert s.get("k").fields == after.fields
    assert s.get("missing") is None


def test_unknown_fields_and_json_values_survive_unchanged(make_workspace) -> None:
    s = make_workspace().sessions
    fields = {
        "sessionId": "s1",
        "updatedAt": 1700000000123,
        "big": 2**62 + 1,
        "float": 0.1,
        "exp": 1e300,
        "null": None,
        "text": "ünïcode ✓ \u2028 \x00",
        "list": [True, False, [], {}],
    }
    s.put("k", fields, updated_at=1700000000123)
    assert s.get("k").fields == fields
    assert json.dumps(s.get("k").fields) == json.dumps(fields)


def test_updated_at_moves_with_each_patch(make_workspace) -> None:
    s = make_workspace().sessions
    first = s.patch("k", {"a": 1}, updated_at=1000)
    second = s.patch("k", {"b": 2})
    assert first.updated_at == 1000 < second.updated_at
    assert second.created_at == 1000


def test_updated_at_never_moves_backwards(make_workspace) -> None:
    s = make_workspace().sessions
    future = now_ms() + 3_600_000  # written by an import from a clock that runs ahead
    s.put("k", {"label": "legacy"}, updated_at=future)
    assert s.patch("k", {"label": "api"}).updated_at == future
    assert s.patch("k", {"label": "older"}, updated_at=5).updated_at == future
    s.put("k", {"label": "older import"}, updated_at=7)
    assert s.get("k").updated_at == future


def test_an_import_never_replaces_a_row_written_after_an_import(make_workspace) -> None:
    s = make_workspace().sessions
    assert s.import_entry("k", {"label": "legacy 1"}, updated_at=2000)
    assert s.import_entry("k", {"label": "legacy 2"}, updated_at=3000)  # only imports wrote it
    assert not s.import_entry("k", {"label": "legacy 2"}, updated_at=3000)  # not newer
    s.patch("k", {"label": "api"}, updated_at=1000)
    assert s.get("k").written_since_import
    assert not s.import_entry("k", {"label": "legacy 3"}, updated_at=10**15)
    assert s.get("k").fields == {"label": "api"}
    # A row the API made before any import is replaced by a newer imported entry.
    s.patch("fresh", {"label": "api"}, updated_at=1000)
    assert s.import_entry("fresh", {"label": "legacy"}, updated_at=2000)


def test_list_filters_by_prefix_time_and_fields(make_workspace) -> None:
    s = make_workspace().sessions
    s.patch("agent:main:a", {"sessionId": "a", "channel": "cli"}, updated_at=1000)
    s.patch("agent:main:b", {"sessionId": "b", "channel": "web"}, updated_at=2000)
    s.patch("agent:other:c", {"sessionId": "c", "channel": "web"}, updated_at=3000)
    assert [x.key for x in s.list()] == ["agent:other:c", "agent:main:b", "agent:main:a"]
    assert [x.key for x in s.list(prefix="agent:main:")] == ["agent:main:b", "agent:main:a"]
    assert [x.key for x in s.list(updated_after=1500, updated_before=2500)] == ["agent:main:b"]
    assert [x.key for x in s.list(where={"channel": "web"}, limit=1)] == ["agent:other:c"]
    assert [x.key for x in s.list(session_id="a")] == ["agent:main:a"]
    s.delete("agent:main:a")
    assert s.count() == 2


def _patch_own_field(home: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    ws = Workspace.open("alice", home)
    start.wait()
    for i in range(100):
        ws.sessions.patch("shared", {f"w{worker}": i})
    ws.close()


def test_concurrent_patches_of_different_fields_lose_nothing(make_workspace, home: Path) -> None:
    ws = make_workspace()
    ws.sessions.patch("shared", {"keep": "me"})
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_patch_own_field, args=(str(home), w, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert ws.sessions.get("shared").fields == {
        "keep": "me",
        "w0": 99,
        "w1": 99,
        "w2": 99,
        "w3": 99,
    }


def test_sessions_cli_lists_and_shows(make_workspace) -> None:
    from click.testing import CliRunner

    from vfs.cli import main

    make_workspace().sessions.patch("k1", {"sessionId": "s1", "extra": [1]})
    runner = CliRunner()
    listed = runner.invoke(main, ["sessions", "ls", "alice", "--json"])
    assert [x["key"] for x in json.loads(listed.output)] == ["k1"]
    shown = runner.invoke(main, ["sessions", "show", "alice", "k1", "--json"])
    assert json.loads(shown.output)["fields"] == {"sessionId": "s1", "extra": [1]}
    assert runner.invoke(main, ["sessions", "show", "alice", "nope"]).exit_code == 1


def test_values_json_cannot_hold_are_refused_and_nothing_changes(make_workspace) -> None:
    import pytest

    ws = make_workspace()
    ws.sessions.patch("k", {"a": 1})
    with pytest.raises(ValueError):
        ws.sessions.patch("k", {"a": float("nan")})
    with pytest.raises(ValueError):
        ws.transcripts.append("s", {"type": "x", "v": float("inf")})
    with pytest.raises(ValueError):
        ws.caches.set("agent", "k", {"v": float("nan")})
    with pytest.raises(TypeError):
        ws.artifacts.start("t", inputs={"v": object()})
    assert ws.sessions.get("k").fields == {"a": 1}
    assert not ws.transcripts.exists("s")
