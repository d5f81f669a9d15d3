"""Throughput of the stores on one agent database; prints a table.

    .venv/bin/python bench/bench_stores.py [--quick]

Measures transcript appends (one process, and eight at once appending to one
session), session patches, cache sets and gets, and legacy import (lines/s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

from vfs import Workspace
from vfs.legacy import import_legacy


def _appender(home: str, n: int, start: multiprocessing.synchronize.Event) -> None:
    ws = Workspace.open("bench", home)
    start.wait()
    for i in range(n):
        ws.transcripts.append(
            "s", {"type": "message", "message": {"role": "user", "content": f"m{i}"}}
        )
    ws.close()


def bench_appends(home: str, processes: int, per_process: int) -> float:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_appender, args=(home, per_process, start)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker open its workspace
    began = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    return processes * per_process / (time.perf_counter() - began)


def timed(n: int, call) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    for i in range(n):
        call(i)
    return n / (time.perf_counter() - began)


def legacy_dir(root: Path, sessions: int, lines: int) -> int:
    root.mkdir()
    entries = {}
    for s in range(sessions):
        sid = f"{s:08x}-0000-0000-0000-000000000000"
        entries[f"agent:main:{s}"] = {
            "sessionId": sid,
            "updatedAt": 1_700_000_000_000 + s,
            "model": "m",
        }
        out = [
            json.dumps({"type": "session", "version": 3, "id": sid, "timestamp": "t", "cwd": "/"})
        ]
        parent = None
        for i in range(lines):
            eid = f"{s:04x}{i:06x}"
            out.append(json.dumps({
                "type": "message", "id": eid, "parentId": parent, "timestamp": "2025-01-01T00:00:00Z",
                "message": {"role": "user" if i % 2 else "assistant", "content": [{"type": "text", "text": "word " * 40}]},
            }))  # fmt: skip
            parent = eid
        (root / f"{sid}.jsonl").write_text("\n".join(out) + "\n")
    (root / "sessions.json").write_text(json.dumps(entries))
    return sessions * (lines + 1) + sessions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="Fewer operations.")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    n = int(5000 * scale)
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = str(Path(tmp) / "home")
        ws = Workspace.create("bench", home)
        rows.append(("transcript append, 1 process", n // 2, bench_appends(home, 1, n // 2)))
        per = int(500 * scale)
        rows.append(("transcript append, 8 processes", 8 * per, bench_appends(home, 8, per)))
        rows.append((
            "session patch (one field)", n,
            timed(n, lambda i: ws.sessions.patch(f"k{i % 100}", {"n": i, "f": "x" * 50})),
        ))  # fmt: skip
        value = b"v" * 1024
        rows.append(
            ("cache set (1 KiB)", n, timed(n, lambda i: ws.caches.set("agent", f"k{i}", value)))
        )
        rows.append(("cache get (hit)", n, timed(n, lambda i: ws.caches.get("agent", f"k{i}"))))
        run = ws.artifacts.start("bench")
        blob = b"0123456789abcdef" * 4096
        rows.append((
            "artifact attach (64 KiB)", n // 10,
            timed(n // 10, lambda i: ws.artifacts.attach(run.id, f"o{i}", blob + str(i).encode())),
        ))  # fmt: skip
        lines = legacy_dir(Path(tmp) / "legacy", sessions=int(20 * scale) or 1, lines=2000)
        began = time.perf_counter()
        report = import_legacy(ws, Path(tmp) / "legacy", keep_sources=True)
        elapsed = time.perf_counter() - began
        assert not report.failed
        rows.append(("legacy import (lines)", lines, lines / elapsed))
        began = time.perf_counter()
        import_legacy(ws, Path(tmp) / "legacy", keep_sources=True)
        rows.append(
            ("legacy re-import, nothing new (lines)", lines, lines / (time.perf_counter() - began))
        )
        ws.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'count':>7}  {'per second':>11}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 11}")
    for name, count, rate in rows:
        print(f"{name:<{width}}  {count:>7}  {rate:>11,.0f}")


if __name__ == "__main__":
    main()
