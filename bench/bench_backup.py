"""Backup and restore throughput, beside tar of the same tree, to a local directory
and to an S3-compatible server on loopback (moto), one run, one table.

    python bench/bench_backup.py [--mib 1024] [--no-s3]

The workspace is sqlite mode, files of 64 KiB to 4 MiB of random bytes. Rows:
tar of the same tree exported to a native directory (the baseline), the first
backup, a second backup of the unchanged workspace (bytes it wrote), and
restore. Figures are MB/s of workspace content.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.s3_server import apply, s3_server
from vfs import Workspace
from vfs.backup import backup_agent, restore_agent
from vfs.export import export_tree

Result = TypeVar("Result")


def fill(ws: Workspace, total: int) -> int:
    rng = random.Random(7)
    written = 0
    i = 0
    while written < total:
        size = rng.choice([64 << 10, 256 << 10, 1 << 20, 4 << 20])
        ws.fs.pipe(f"/d{i % 16}/f{i}.bin", os.urandom(size))
        written += size
        i += 1
    return written


def timed(fn: Callable[[], Result]) -> tuple[float, Result]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(root: Path, mib: int, s3: bool) -> tuple[int, list[tuple[str, float, int]]]:
    """Bytes of content, and (operation, seconds, bytes written) per row; all under ``root``."""
    home = root / "home"
    with Workspace.create("alice", home, mode="sqlite") as ws:
        content = fill(ws, mib << 20)
        native = root / "native"
        export_tree(ws, str(native))
    rows = []
    seconds, _ = timed(
        lambda: subprocess.run(
            ["tar", "-cf", str(root / "tree.tar"), "-C", str(native), "."], check=True
        )
    )
    rows.append(("tar -cf of the same tree (local)", seconds, content))
    targets = [("local", str(root / "backups"))]
    environment = None
    server = s3_server() if s3 else None
    if server is not None:
        environment = server.__enter__()
        apply(environment)
        import s3fs

        s3fs.S3FileSystem().mkdir("bench")
        targets.append(("S3 loopback", "s3://bench/backups"))
    try:
        for label, dest in targets:
            seconds, first = timed(functools.partial(backup_agent, "alice", dest, home))
            rows.append(
                (f"backup, first ({label})", seconds, first.new_bytes + first.snapshot_bytes)
            )
            seconds, second = timed(functools.partial(backup_agent, "alice", dest, home))
            rows.append(
                (f"backup, unchanged ({label})", seconds, second.new_bytes + second.snapshot_bytes)
            )
            name = "r" + label.split()[0].lower()
            seconds, _ = timed(functools.partial(restore_agent, dest, "alice", home, as_name=name))
            rows.append((f"restore ({label})", seconds, content))
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    return content, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:  # the workspace, its export, the tar file and the backups: twice --mib or more
        content, rows = measure(root, args.mib, s3=not args.no_s3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mb = content / 1e6
    print(f"workspace: {content / (1 << 20):.0f} MiB of content in sqlite mode")
    print(
        f"| {'operation':<34} | {'seconds':>8} | {'MB/s of content':>15} | {'bytes written':>14} |"
    )
    print(f"| {'-' * 34} | {'-' * 8}: | {'-' * 15}: | {'-' * 14}: |")
    for label, seconds, written in rows:
        print(f"| {label:<34} | {seconds:>8.2f} | {mb / seconds:>15.0f} | {written:>14,} |")


if __name__ == "__main__":
    main()
