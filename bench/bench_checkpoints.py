"""Checkpoint and rollback cost on a sqlite-mode workspace, one run, one table.

    python bench/bench_checkpoints.py [--files 10000] [--mib 1024] [--disk]

The workspace holds FILES files of random bytes totalling MIB MiB (sizes vary
around the mean). Rows: taking a checkpoint, a second one, rolling back after
rewriting 1% of the files, rolling back after deleting 10% and adding as many,
and deleting a checkpoint. "bytes added" is the growth of the database's used
pages; "WAL written" is what the operation's transaction wrote to the WAL
(pages it touched). With --disk the same tree is measured in disk mode
(a checkpoint there imports the tree's content as chunks).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vfs import Workspace


def fill(ws: Workspace, files: int, total: int) -> int:
    rng = random.Random(7)
    mean = total // files
    written = 0
    for i in range(files):
        size = rng.randint(mean // 2, mean * 3 // 2) if mean > 1 else mean
        ws.fs.pipe(f"/d{i % 100}/f{i}.bin", os.urandom(size))
        written += size
    return written


def used_bytes(ws: Workspace) -> int:
    ws.db.value("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = ws.db.value("PRAGMA page_count") - ws.db.value("PRAGMA freelist_count")
    return int(pages * ws.db.value("PRAGMA page_size"))


def wal_bytes(ws: Workspace) -> int:
    try:
        return os.stat(f"{ws.db.path}-wal").st_size
    except FileNotFoundError:
        return 0


def measure(ws: Workspace, fn: Callable[[], object]) -> tuple[float, int, int]:
    """Seconds, bytes added to the database, bytes written to the WAL."""
    before = used_bytes(ws)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    wal = wal_bytes(ws)
    return seconds, used_bytes(ws) - before, wal


def show(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def churn(ws: Workspace, files: int, rewrite: int, replace: int) -> None:
    rng = random.Random(11)
    for i in rng.sample(range(files), rewrite):
        ws.fs.pipe(f"/d{i % 100}/f{i}.bin", os.urandom(4096))
    for i in rng.sample(range(files), replace):
        ws.fs.rm(f"/d{i % 100}/f{i}.bin")
        ws.fs.pipe(f"/new/n{i}.bin", os.urandom(4096))


def run(mode: str, root: Path, files: int, total: int) -> list[tuple[str, float, int, int]]:
    rows = []
    with Workspace.create("alice", root / mode, mode=mode) as ws:
        fill(ws, files, total)
        rows.append(("checkpoint", *measure(ws, lambda: ws.checkpoints.create("one"))))
        rows.append(("second checkpoint", *measure(ws, lambda: ws.checkpoints.create("two"))))
        churn(ws, files, files // 100, 0)
        rows.append(
            ("rollback (1% rewritten)", *measure(ws, lambda: ws.checkpoints.restore("one")))
        )
        churn(ws, files, 0, files // 10)
        rows.append(
            ("rollback (10% replaced)", *measure(ws, lambda: ws.checkpoints.restore("one")))
        )
        rows.append(("delete checkpoint", *measure(ws, lambda: ws.checkpoints.delete("two"))))
    return [(f"{mode}: {name}", *rest) for name, *rest in rows]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--disk", action="store_true", help="measure disk mode too")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    try:
        rows = run("sqlite", root, args.files, args.mib << 20)
        if args.disk:
            rows += run("disk", root, args.files, args.mib << 20)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.files} files, {args.mib} MiB")
    print(f"{'operation':<34} {'seconds':>8} {'bytes added':>12} {'WAL written':>12}")
    for name, seconds, added, wal in rows:
        print(f"{name:<34} {seconds:>8.3f} {show(added):>12} {show(wal):>12}")


if __name__ == "__main__":
    main()
