"""Scoped caches: values, TTL, the LRU size budget and counters, also under concurrent writers."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from vfs import Workspace


def test_bytes_and_json_values_round_trip_per_scope(make_workspace) -> None:
    c = make_workspace().caches
    c.set("agent", "k", {"a": [1, 2.5, None], "ü": "✓"})
    c.set("tool:grep", "k", b"\x00raw\xff")
    c.set("session:abc", "k", 42)
    assert c.get("agent", "k") == {"a": [1, 2.5, None], "ü": "✓"}
    assert c.get("tool:grep", "k") == b"\x00raw\xff"
    assert c.get("session:abc", "k") == 42
    assert c.get("run:r1", "k", "missing") == "missing"
    assert c.delete("agent", "k") and not c.delete("agent", "k")
    assert c.clear("tool:grep") == 1
    assert c.get("tool:grep", "k") is None


def test_unknown_scope_is_refused(make_workspace) -> None:
    with pytest.raises(ValueError, match="scope"):
        make_workspace().caches.set("elsewhere", "k", 1)


def test_large_values_go_through_the_chunk_store_and_are_freed(make_workspace) -> None:
    ws = make_workspace()
    value = bytes(range(256)) * 1000
    ws.caches.set("agent", "big", value)
    assert ws.caches.get("agent", "big") == value
    assert ws.db.value("SELECT COUNT(*) FROM cache_chunks") > 0
    ws.caches.delete("agent", "big")
    assert ws.db.value("SELECT COUNT(*) FROM chunks") == 0


def test_expired_entries_are_never_returned(make_workspace) -> None:
    c = make_workspace().caches
    c.set("agent", "short", "v", ttl=0.2)
    c.set("agent", "long", "v", ttl=60)
    assert c.get("agent", "short") == "v"
    time.sleep(0.3)
    assert c.get("agent", "short") is None
    assert c.get("agent", "long") == "v"
    assert [e.key for e in c.entries()] == ["long"]
    assert c.stats()["expirations"] == 1


def test_budget_evicts_least_recently_used_first(make_workspace) -> None:
    c = make_workspace().caches
    c.set_budget(10_000)
    for i in range(5):
        c.set("agent", f"k{i}", b"x" * 2000)
    assert c.get("agent", "k0") is not None  # k0 is now the most recently used
    c.set("agent", "k5", b"x" * 2000)
    stats = c.stats()
    assert stats["bytes"] <= 10_000 and stats["evictions"] == 1
    assert c.get("agent", "k1") is None  # the least recently used went
    assert c.get("agent", "k0") is not None
    with pytest.raises(ValueError, match="budget"):
        c.set("agent", "huge", b"x" * 20_000)


def test_counters_count_hits_and_misses(make_workspace) -> None:
    c = make_workspace().caches
    c.set("agent", "k", 1)
    c.get("agent", "k")
    c.get("agent", "k")
    c.get("agent", "nope")
    stats = c.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 1, 1)


def _churn(home: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    ws = Workspace.open("alice", home)
    c = ws.caches
    start.wait()
    for i in range(150):
        c.set("agent", f"w{worker}-{i}", b"v" * 1000)
        c.set(f"run:{worker}", f"t{i}", "short-lived", ttl=0.05)
        c.get("agent", f"w{worker}-{i // 2}")
    time.sleep(0.1)
    for i in range(150):
        # Nobody else writes these keys, so an expired one must stay gone.
        assert c.get(f"run:{worker}", f"t{i}") is None
    ws.close()


def test_ttl_and_lru_bound_hold_under_concurrent_writers(make_workspace, home: Path) -> None:
    ws = make_workspace()
    ws.caches.set_budget(50_000)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_churn, args=(str(home), w, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    stats = ws.caches.stats()
    actual = ws.db.value("SELECT COALESCE(SUM(size), 0) FROM cache_entries")
    assert stats["bytes"] == actual <= 50_000
    assert stats["evictions"] > 0
    assert stats["hits"] + stats["misses"] == 4 * 300


def test_cache_cli_lists_clears_and_reports(make_workspace, home: Path) -> None:
    import json

    from click.testing import CliRunner

    from vfs.cli import main

    make_workspace().caches.set("tool:x", "k", "v")
    runner = CliRunner()
    listed = runner.invoke(main, ["cache", "ls", "alice", "--json"])
    assert [e["key"] for e in json.loads(listed.output)] == ["k"]
    stats = runner.invoke(main, ["cache", "stats", "alice", "--budget", "1M", "--json"])
    assert json.loads(stats.output)["budget"] == 1 << 20
    cleared = runner.invoke(main, ["cache", "clear", "alice", "--all", "--json"])
    assert json.loads(cleared.output) == {"removed": 1}
    assert runner.invoke(main, ["cache", "clear", "alice"]).exit_code == 2


def test_entry_expiring_while_waiting_for_the_lock_is_not_returned(make_workspace) -> None:
    import threading

    ws = make_workspace()
    ws.caches.set("agent", "k", "v", ttl=0.3)
    from vfs.backends.db import Database

    holder = Database(ws.record.db_path, "agent")
    locked = threading.Event()

    def hold_lock() -> None:
        with holder.write():
            locked.set()
            time.sleep(0.8)

    thread = threading.Thread(target=hold_lock)
    thread.start()
    locked.wait()
    assert ws.caches.get("agent", "k", "expired") == "expired"  # waited past the TTL
    thread.join()
