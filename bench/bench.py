"""Core benchmark: agentvfs modes side by side with fsspec's LocalFileSystem.

Prints one table. Each column runs in its own process (so that its peak RSS
is its own), --repeat times, interleaved; each cell is the median. The scale
rows (--scale files in one directory, --agent-files in the agent) run in one
process per column, beside the same operations in a directory of --files
files, three rounds alternating between the two (the median of each). Usage::

    python bench/bench.py [--files 1000] [--stream-mib 256] [--modes sqlite,disk,hybrid]
    python bench/bench.py --quick                          # a minute: 200 files, one run
    python bench/bench.py --agent-files 1000000            # adds the 1,000,000-file rows
    python bench/bench.py --chunk-sizes 16384,65536,262144   # the chunk-size sweep
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
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


def per_file(seconds: float, count: int) -> float:
    return seconds / count * 1e6


def measure(fs: Any, root: str, files: int, stream_mib: int) -> dict[str, float]:
    """Run every workload on ``fs`` under ``root``: µs per file, ms per listing, MB/s."""
    payloads = [os.urandom(SMALL) for _ in range(files)]
    out: dict[str, float] = {}
    fs.makedirs(f"{root}/one", exist_ok=True)
    fs.makedirs(f"{root}/tx", exist_ok=True)

    start = time.perf_counter()
    for i, data in enumerate(payloads):
        fs.pipe_file(f"{root}/one/f{i:05d}", data)
    out[W_ONE] = per_file(time.perf_counter() - start, files)

    start = time.perf_counter()
    with fs.transaction:
        for i, data in enumerate(payloads):
            fs.pipe_file(f"{root}/tx/f{i:05d}", data)
    out[W_TX] = per_file(time.perf_counter() - start, files)

    start = time.perf_counter()
    for i in range(files):
        fs.cat_file(f"{root}/one/f{i:05d}")
    out[READ] = per_file(time.perf_counter() - start, files)

    start = time.perf_counter()
    for i in range(files):
        fs.info(f"{root}/one/f{i:05d}")
    out[INFO] = per_file(time.perf_counter() - start, files)

    start = time.perf_counter()
    listing = fs.ls(f"{root}/one", detail=True)
    out[LS] = (time.perf_counter() - start) * 1e3
    assert len(listing) == files

    if stream_mib:
        block = bytearray(os.urandom(1 << 20))
        start = time.perf_counter()
        with fs.open(f"{root}/stream.bin", "wb") as f:
            for i in range(stream_mib):
                block[:8] = i.to_bytes(8, "little")
                f.write(block)
        out[S_WRITE] = stream_mib * 1.048576 / (time.perf_counter() - start)

        start = time.perf_counter()
        with fs.open(f"{root}/stream.bin", "rb", block_size=4 << 20) as f:
            while f.read(4 << 20):
                pass
        out[S_READ] = stream_mib * 1.048576 / (time.perf_counter() - start)
    out[RSS] = peak_rss_mib()
    return out


def fill(fs: Any, directory: str, count: int, batch: int = 1000) -> None:
    """``count`` files of one shared 4 KiB payload in ``directory``, written in
    transactions of ``batch`` (the fill is setup, not a measurement)."""
    payload = os.urandom(SMALL)
    fs.makedirs(directory, exist_ok=True)
    host = host_directory(fs, directory)
    if host is not None:
        # A directory on the host (disk mode, LocalFileSystem) fills by plain writes:
        # disk mode's fsync per published file would make the setup take minutes.
        for i in range(count):
            with open(os.path.join(host, f"f{i:07d}"), "wb") as f:
                f.write(payload)
        return
    for first in range(0, count, batch):
        with fs.transaction:
            for i in range(first, min(count, first + batch)):
                fs.pipe_file(f"{directory}/f{i:07d}", payload)


def host_directory(fs: Any, directory: str) -> str | None:
    """Where ``directory`` lives on the host, when files written there show in ``fs``."""
    workspace = getattr(fs, "workspace", None)
    if workspace is None:
        return directory  # LocalFileSystem
    if workspace.mode == "disk":
        return str(workspace.record.workspace) + directory
    return None


def sample_ops(fs: Any, directory: str, count: int, sample: int, new: str) -> dict[str, float]:
    """Per-file costs of ``sample`` writes (of new files named ``new``...), reads and
    infos among the ``count`` files of ``directory``, and of listing it."""
    out: dict[str, float] = {}
    payloads = [os.urandom(SMALL) for _ in range(sample)]
    step = max(1, count // sample)
    picks = [f"{directory}/f{i:07d}" for i in range(0, count, step)][:sample]
    start = time.perf_counter()
    for i, data in enumerate(payloads):
        fs.pipe_file(f"{directory}/{new}{i:07d}", data)
    out[W_ONE] = per_file(time.perf_counter() - start, sample)
    start = time.perf_counter()
    for path in picks:
        fs.cat_file(path)
    out[READ] = per_file(time.perf_counter() - start, len(picks))
    start = time.perf_counter()
    for path in picks:
        fs.info(path)
    out[INFO] = per_file(time.perf_counter() - start, len(picks))
    listing = getattr(fs, "iterdir", fs.ls)  # agentvfs lists without holding the directory
    start = time.perf_counter()
    entries = sum(1 for _ in listing(directory, detail=True))
    out[LS_ENTRY] = per_file(time.perf_counter() - start, entries)
    return out


def database_bytes(workdir: Path) -> int:
    """Bytes of every SQLite file (database and WAL) under the column's home."""
    total = 0
    for path in (workdir / "home").rglob("*"):
        if path.is_file() and (path.suffix in (".db", ".sqlite") or path.name.endswith("-wal")):
            total += path.stat().st_size
    return total


def measure_scale(
    fs: Any,
    root: str,
    count: int,
    agent_files: int,
    sample: int,
    metadata_bytes: Callable[[int], float | None],
    rounds: int = 3,
) -> dict[str, float]:
    """Costs with ``count`` files in one directory (and ``agent_files`` in the agent),
    each beside the same costs in a directory of ``sample`` files, measured in the
    same process in alternating rounds (the median of each): run apart, the two
    moved by more than the growth they are compared for. ``metadata_bytes(n)``:
    the database bytes per file the fills of ``n`` files (of one shared
    content) added, or None where there is no database."""
    out: dict[str, float] = {}
    fill(fs, f"{root}/base", sample)
    fill(fs, f"{root}/big", count)
    per_file_bytes = metadata_bytes(sample + count)
    if per_file_bytes is not None:
        out["database bytes per file (metadata)"] = per_file_bytes
    runs: dict[int, list[dict[str, float]]] = {sample: [], count: []}
    for r in range(rounds):
        for files, directory in ((sample, "base"), (count, "big")):
            runs[files].append(sample_ops(fs, f"{root}/{directory}", files, sample, f"n{r}-"))
    for files, measured in runs.items():
        for row, value in median_of(measured).items():
            out[scale_row(row, files)] = value
    # Memory in a pass of its own: tracemalloc slows every allocation down.
    listing = getattr(fs, "iterdir", fs.ls)
    tracemalloc.start()
    for _ in listing(f"{root}/big", detail=True):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out[f"ls @{count:,} peak Python MiB"] = peak / (1 << 20)
    if agent_files:
        per_dir = 1000
        for d in range(0, max(0, agent_files - count), per_dir):
            fill(fs, f"{root}/tree/d{d // per_dir:05d}", per_dir)
        total = count + max(0, agent_files - count)
        for row, value in sample_ops(fs, f"{root}/tree/d00000", per_dir, sample, "n").items():
            out[f"{row} @{total:,} in agent"] = value
        start = time.perf_counter()
        found = len(fs.find(root or "/"))
        out[f"find @{total:,} (s)"] = time.perf_counter() - start
        start = time.perf_counter()
        fs.du(root or "/")
        out[f"du @{total:,} (s)"] = time.perf_counter() - start
        assert found >= total, (found, total)
    return out


def scale_row(row: str, files: int) -> str:
    return f"{row} @{files:,} in one dir"


def run_column(column: str, workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    if column == "local":
        from fsspec.implementations.local import LocalFileSystem

        fs: Any = LocalFileSystem()
        root = str(workdir / "local")
        os.makedirs(root)
        ws = None
    else:
        from vfs import Workspace

        ws = Workspace.create("bench", workdir / "home", mode=column.split(" ")[0])
        fs, root = ws.fs, ""
    try:
        if not args.scale_only:
            return measure(fs, root, args.files, args.stream_mib)
        before = database_bytes(workdir)

        def metadata_bytes(files: int) -> float | None:
            if ws is None:
                return None
            ws.db.checkpoint()  # the WAL folded into the database, as it will be
            return (database_bytes(workdir) - before) / files

        return measure_scale(fs, root, args.scale, args.agent_files, args.files, metadata_bytes)
    finally:
        if ws is not None:
            ws.close()


W_ONE = "write one by one (µs/file)"
W_TX = "write in one transaction (µs/file)"
READ = "read (µs/file)"
INFO = "info (µs/file)"
LS = "ls of N (ms)"
LS_ENTRY = "ls (µs/entry)"
S_WRITE = "stream write (MB/s)"
S_READ = "stream read (MB/s)"
RSS = "peak RSS (MiB)"
RATIO_ROWS = (W_ONE, W_TX, READ, INFO, LS)
SCALE_ROWS = (W_ONE, READ, INFO, LS_ENTRY)


def child(column: str, args: argparse.Namespace, scale: bool) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="agentvfs-bench-", dir=os.environ.get("BENCH_DIR")))
    env = dict(os.environ)
    if column.startswith("sqlite ") and args.chunk_sizes:
        env["AGENT_VFS_CHUNK_SIZE"] = str(int(column.split()[1][:-1]) * 1024)
    command = [sys.executable, __file__, "--column", column, "--workdir", str(workdir)]
    command += ["--files", str(args.files), "--stream-mib", str(args.stream_mib)]
    if scale:
        command += ["--scale-only", "--scale", str(args.scale)]
        command += ["--agent-files", str(args.agent_files)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if proc.returncode:
        sys.exit(f"bench: column {column} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {row: statistics.median(run[row] for run in runs) for row in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="runs per column; the median")
    parser.add_argument("--modes", default="sqlite,disk,hybrid")
    parser.add_argument("--scale", type=int, default=100_000, help="files in one directory")
    parser.add_argument("--agent-files", type=int, default=0, help="files in one agent")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale rows")
    parser.add_argument(
        "--quick", action="store_true", help="200 files, one run, 10,000 at scale, no streams"
    )
    parser.add_argument("--chunk-sizes", default="", help="sweep sqlite mode over these sizes")
    parser.add_argument("--column", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--scale-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.column:  # child process: one column
        print(json.dumps(run_column(args.column, Path(args.workdir), args)))
        return
    if args.quick:
        args.files, args.repeat, args.stream_mib = 200, 1, 0
        args.scale, args.agent_files = min(args.scale, 10_000), 0

    columns = ["local"]
    if args.chunk_sizes:
        columns += [f"sqlite {int(s) // 1024}K" for s in args.chunk_sizes.split(",")]
    else:
        for mode in args.modes.split(","):
            if importlib.util.find_spec(f"vfs.backends.{mode}") is not None:
                columns.append(mode)
    # Runs interleave the columns, so a change in the machine's load hits all of them.
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in columns}
    for _ in range(args.repeat):
        for column in columns:
            runs[column].append(child(column, args, scale=False))
    results = {c: median_of(r) for c, r in runs.items()}
    if args.scale and not args.no_scale and not args.chunk_sizes:
        for column in columns:
            if column == "local" and args.agent_files:
                continue  # a million 4 KiB host files are 4 GiB, and no row compares them
            results[column].update(child(column, args, scale=True))

    local = results["local"]
    width = max(len(r) for r in results[columns[-1]]) + 2
    print(
        f"files={args.files}  stream={args.stream_mib} MiB  median of {args.repeat}"
        f"  ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})"
    )
    print("workload".ljust(width) + "".join(c.rjust(18) for c in columns))
    rows = list(dict.fromkeys(r for c in columns for r in results[c]))
    for row in rows:
        cells = []
        for column in columns:
            value = results[column].get(row)
            cell = "" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.3f}"
            # Times against LocalFileSystem's plain writes; the ratio is local / mode.
            base = local[W_ONE] if row == W_TX else local.get(row)
            if value and base and column != "local" and row in RATIO_ROWS:
                cell += f" ({base / value:.2f}x)"
            cells.append(cell.rjust(18))
        print(row.ljust(width) + "".join(cells))
    print()
    print("ratios: LocalFileSystem / mode, higher is faster; the transaction row is")
    print("compared with LocalFileSystem's plain writes one by one.")
    total = max(args.scale, args.agent_files)
    for column in columns[1:]:
        found = results[column]
        for row in SCALE_ROWS:
            base = found.get(scale_row(row, args.files))
            scaled = [f"{row} @{total:,} in agent"]
            if args.scale != args.files:
                scaled.append(scale_row(row, args.scale))
            for name in scaled:
                if base and found.get(name):
                    print(f"  {column}: {name}: {found[name] / base:.2f}x the cost"
                          f" @{args.files:,} in one dir, same run")  # fmt: skip


if __name__ == "__main__":
    main()
