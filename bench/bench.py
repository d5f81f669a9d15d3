"""Core benchmark: agentvfs modes side by side with fsspec's LocalFileSystem.

Prints one table. Each column runs in its own process so that its peak RSS is
its own. Usage::

    python bench/bench.py [--files 1000] [--stream-mib 256] [--modes sqlite,disk,hybrid]
    python bench/bench.py --chunk-sizes 16384,65536,262144   # the chunk-size sweep
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SMALL = 4096


def peak_rss_mib() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries the parent's
    peak into it across vfork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(fs: Any, root: str, files: int, stream_mib: int) -> dict[str, float]:
    """Run every workload on ``fs`` under ``root``; seconds (or MB/s) per workload."""
    payloads = [os.urandom(SMALL) for _ in range(files)]
    out: dict[str, float] = {}
    fs.makedirs(f"{root}/one", exist_ok=True)
    fs.makedirs(f"{root}/tx", exist_ok=True)

    start = time.perf_counter()
    for i, data in enumerate(payloads):
        fs.pipe_file(f"{root}/one/f{i:05d}", data)
    out["write 4K x N, one by one (s)"] = time.perf_counter() - start

    start = time.perf_counter()
    with fs.transaction:
        for i, data in enumerate(payloads):
            fs.pipe_file(f"{root}/tx/f{i:05d}", data)
    out["write 4K x N, one transaction (s)"] = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(files):
        fs.cat_file(f"{root}/one/f{i:05d}")
    out["read 4K x N (s)"] = time.perf_counter() - start

    start = time.perf_counter()
    listing = fs.ls(f"{root}/one", detail=True)
    out["ls N-entry dir (s)"] = time.perf_counter() - start
    assert len(listing) == files

    start = time.perf_counter()
    for i in range(files):
        fs.info(f"{root}/one/f{i:05d}")
    out["info x N (s)"] = time.perf_counter() - start

    block = bytearray(os.urandom(1 << 20))
    start = time.perf_counter()
    with fs.open(f"{root}/stream.bin", "wb") as f:
        for i in range(stream_mib):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
    out["stream write (MB/s)"] = stream_mib * 1.048576 / (time.perf_counter() - start)

    start = time.perf_counter()
    with fs.open(f"{root}/stream.bin", "rb", block_size=4 << 20) as f:
        while f.read(4 << 20):
            pass
    out["stream read (MB/s)"] = stream_mib * 1.048576 / (time.perf_counter() - start)
    out["peak RSS (MiB)"] = peak_rss_mib()
    return out


def run_column(column: str, workdir: Path, files: int, stream_mib: int) -> dict[str, float]:
    if column == "local":
        from fsspec.implementations.local import LocalFileSystem

        return measure(LocalFileSystem(), str(workdir / "local"), files, stream_mib)
    from vfs import Workspace

    mode = column.split(" ")[0]
    ws = Workspace.create("bench", workdir / "home", mode=mode)
    try:
        return measure(ws.fs, "", files, stream_mib)
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--modes", default="sqlite,disk,hybrid")
    parser.add_argument("--chunk-sizes", default="", help="sweep sqlite mode over these sizes")
    parser.add_argument("--column", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.column:  # child process: one column
        result = run_column(args.column, Path(args.workdir), args.files, args.stream_mib)
        print(json.dumps(result))
        return

    columns = ["local"]
    if args.chunk_sizes:
        columns += [f"sqlite {int(s) // 1024}K" for s in args.chunk_sizes.split(",")]
    else:
        for mode in args.modes.split(","):
            if importlib.util.find_spec(f"backends.{mode}") is not None:
                columns.append(mode)
    results: dict[str, dict[str, float]] = {}
    for column in columns:
        workdir = Path(tempfile.mkdtemp(prefix="agentvfs-bench-", dir=os.environ.get("BENCH_DIR")))
        env = dict(os.environ)
        if column.startswith("sqlite ") and args.chunk_sizes:
            env["AGENT_VFS_CHUNK_SIZE"] = str(int(column.split()[1][:-1]) * 1024)
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--column",
                    column,
                    "--workdir",
                    str(workdir),
                    "--files",
                    str(args.files),
                    "--stream-mib",
                    str(args.stream_mib),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results[column] = json.loads(proc.stdout)

    rows = list(results["local"])
    width = max(len(r) for r in rows) + 2
    print(f"files={args.files}  stream={args.stream_mib} MiB  ({os.cpu_count()} cores)")
    print("workload".ljust(width) + "".join(c.rjust(14) for c in columns))
    for row in rows:
        print(row.ljust(width) + "".join(f"{results[c][row]:14.3f}" for c in columns))
    if "sqlite" in results:
        local, sql = results["local"], results["sqlite"]
        print()
        print("sqlite vs local (higher is better for sqlite):")
        for row in (
            "read 4K x N (s)",
            "write 4K x N, one transaction (s)",
            "write 4K x N, one by one (s)",
            "ls N-entry dir (s)",
            "info x N (s)",
        ):
            print(f"  {row.ljust(width)} {local[row] / sql[row]:6.2f}x")


if __name__ == "__main__":
    main()
