"""Benchmark the mount in each workspace mode against a native directory.

Usage: ``python bench/bench_mount.py [--modes disk,sqlite,hybrid] [--gib 1] [--rounds 1]``

Disk mode is measured both ways it mounts: ``disk-bind`` (the kernel's bind
mount of the directory, needs root) and ``disk-fuse`` (``--fuse``).

Prints three tables: wall-clock seconds (or MB/s, µs) per workload with the
ratio to the native directory and the FUSE process's peak RSS; the kernel
requests each mode's mount received per workload, by type; and the cost of one
request (a ``stat`` with nothing cached) in each mode against the floor, a
pyfuse3 filesystem that answers from memory (``bench/floor_fs.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from vfs import Workspace
from vfs.mount.counting import COUNT_ENV
from vfs.mount.process import start, stop
from vfs.state.registry import MODES

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
MIB = 1 << 20


def git(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["git", *map(str, args)], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def make_repo(root: Path, files: int) -> None:
    rng = random.Random(7)
    for i in range(files):
        path = root / f"pkg{i % 40:02d}" / f"mod{i % 7}" / f"file{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"line {rng.random()}\n" for _ in range(rng.randint(5, 120))))
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "initial", cwd=root)


def timed(fn: Callable[[], object]) -> float:
    # Every step starts with nothing dirty: otherwise the writeback of the step
    # before (often another column's) lands on this one's clock.
    os.sync()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bench_git(target: Path, source: Path) -> dict[str, float]:
    clone = target / "clone"
    results = {
        "git clone": timed(lambda: git("clone", "-q", "--no-hardlinks", source, clone, cwd=target))
    }
    results["git status"] = timed(lambda: git("status", "--porcelain", cwd=clone))

    def change_and_commit() -> None:
        for path in sorted(clone.glob("pkg0*/mod1/*.py"))[:20]:
            with open(path, "a") as f:
                f.write("# changed\n")
        git("commit", "-q", "-am", "change", cwd=clone)

    results["git commit"] = timed(change_and_commit)
    results["git total"] = sum(results.values())
    return results


def bench_small_files(
    target: Path, count: int, counts: RequestCounts | None, requests: dict[str, Counter[str]]
) -> dict[str, float]:
    """Create, stat, list and unlink ``count`` small files; each step's kernel
    requests go to ``requests`` under the step's name (when ``counts`` is given)."""
    d = target / "small"
    d.mkdir()
    names = [d / f"f{i:05d}" for i in range(count)]
    payload = b"x" * 100
    results: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> None:
        results[name] = timed(fn)
        if counts is not None:
            requests[name] = counts.since_last()

    def create() -> None:
        for name in names:
            with open(name, "wb") as f:
                f.write(payload)

    step(f"create {count} files", create)
    step(f"stat {count} files", lambda: [os.stat(n) for n in names])
    step(f"readdir {count} files", lambda: os.listdir(d))
    step(f"unlink {count} files", lambda: list(map(os.unlink, names)))
    d.rmdir()
    return results


def bench_big_file(target: Path, gib: float, reads: int) -> dict[str, float]:
    path = target / "big.bin"
    size = int(gib * 1024) * MIB
    block = os.urandom(MIB)

    def write() -> None:
        with open(path, "wb") as f:
            for _ in range(size // MIB):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())

    write_s = timed(write)
    drop_cache(path)

    def read() -> None:
        with open(path, "rb", buffering=0) as f:
            while f.read(MIB):
                pass

    read_s = timed(read)
    drop_cache(path)
    rng = random.Random(3)
    offsets = [rng.randrange(0, size // 4096) * 4096 for _ in range(reads)]
    fd = os.open(path, os.O_RDONLY)
    try:
        random_s = timed(lambda: [os.pread(fd, 4096, off) for off in offsets])
    finally:
        os.close(fd)
    path.unlink()
    return {
        f"write {gib:g} GiB (MB/s)": size / MIB / write_s,
        f"read {gib:g} GiB (MB/s)": size / MIB / read_s,
        "random 4 KiB read (µs)": random_s / reads * 1e6,
    }


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return psutil.Process(pid).memory_info().rss / MIB


class RequestCounts:
    """The request counts of a mount process started with :data:`COUNT_ENV`."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid, self.path = pid, path
        self.last: Counter[str] = Counter()

    def now(self) -> Counter[str]:
        before = self.path.stat().st_mtime_ns if self.path.exists() else 0
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while (self.path.stat().st_mtime_ns if self.path.exists() else 0) == before:
            if time.monotonic() > deadline:
                raise TimeoutError("the mount did not write its request counts")
            time.sleep(0.01)
        return Counter(json.loads(self.path.read_text()))

    def since_last(self) -> Counter[str]:
        current = self.now()
        delta, self.last = current - self.last, current
        return delta


def targets(modes: list[str]) -> list[str]:
    """The mounts to measure: each mode, and disk mode both ways."""
    return [t for m in modes for t in (["disk-bind", "disk-fuse"] if m == "disk" else [m])]


def mode_of(target: str) -> tuple[str, bool]:
    """The mode of a target, and whether it is served through FUSE."""
    mode, _, kind = target.partition("-")
    return mode, kind != "bind"


@contextmanager
def mounted_for(
    target: str, scratch: Path, name: str, **options: object
) -> Iterator[tuple[Path, Path, RequestCounts | None]]:
    mode, fuse = mode_of(target)
    home, where = scratch / f"home-{name}", scratch / f"mnt-{name}"
    Workspace.create("bench", home, mode=mode).close()
    where.mkdir()
    counts_path = scratch / f"counts-{name}.json"
    os.environ[COUNT_ENV] = str(counts_path)
    try:
        mount = start("bench", where, home=home, fuse=fuse, **options)  # type: ignore[arg-type]
    finally:
        del os.environ[COUNT_ENV]
    if not fuse and mount.kind != "bind":
        raise SystemExit("disk-bind needs a bind mount: run as root")
    try:
        yield home, where, None if mount.pid is None else RequestCounts(mount.pid, counts_path)
    finally:
        stop(mount)
        shutil.rmtree(home, ignore_errors=True)
        where.rmdir()  # a later round mounts there again


@contextmanager
def target_for(mode: str, scratch: Path) -> Iterator[tuple[Path, RequestCounts | None]]:
    if mode == "native":
        where = scratch / "native"
        where.mkdir()
        yield where, None
        shutil.rmtree(where)
        return
    with mounted_for(mode, scratch, mode) as (_, where, counts):
        yield where, counts


def stat_loop(where: Path, files: int, rounds: int) -> float:
    """Seconds per pass over ``files`` stats: the best of ``rounds`` passes, as
    the machine is shared and a busy moment only ever adds time."""
    names = [str(where / f"f{i:05d}") for i in range(files)]
    return min(timed(lambda: [os.stat(n) for n in names]) for _ in range(rounds))


def floor_cost(scratch: Path, files: int, rounds: int) -> tuple[float, Counter[str]]:
    """µs per request of the floor filesystem, and its request counts."""
    where, counts_path = scratch / "mnt-floor", scratch / "counts-floor.json"
    where.mkdir()
    floor = Path(__file__).with_name("floor_fs.py")
    process = subprocess.Popen(
        [sys.executable, str(floor), str(where), str(files), str(counts_path)],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        while not os.path.ismount(where):
            time.sleep(0.01)
        stat_loop(where, files, 1)  # warm up
        seconds = stat_loop(where, files, rounds)
    finally:
        subprocess.run(["fusermount3", "-u", str(where)], check=False)
        process.wait(timeout=30)
    counts = Counter(json.loads(counts_path.read_text()))
    per_pass = (counts["lookup"] + counts["getattr"]) / (rounds + 1)
    return seconds / per_pass * 1e6, counts


def request_cost(mode: str, scratch: Path, files: int, rounds: int) -> float:
    """µs per request of a mount in ``mode`` with nothing cached by the kernel."""
    with mounted_for(mode, scratch, f"cost-{mode}", cache_timeout=0) as (home, where, counts):
        assert counts is not None  # a FUSE mount
        with Workspace.open("bench", home) as ws:
            for i in range(files):
                ws.fs.pipe_file(f"/f{i:05d}", b"")
        stat_loop(where, files, 1)  # warm up
        counts.since_last()
        seconds = stat_loop(where, files, rounds)
        done = counts.since_last()
    return seconds / ((done["lookup"] + done["getattr"]) / rounds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repo-files", type=int, default=2_000)
    parser.add_argument("--random-reads", type=int, default=5_000)
    parser.add_argument("--cost-files", type=int, default=2_000)
    parser.add_argument("--cost-rounds", type=int, default=7)
    parser.add_argument(
        "--only-requests", action="store_true", help="just the request counts and costs"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every column this many times, interleaved, and keep each figure's best"
        " (a shared machine's busy moments only ever make a figure worse)",
    )
    args = parser.parse_args()
    modes = targets(
        [m for m in args.modes.split(",") if importlib.util.find_spec(f"vfs.backends.{m}")]
    )
    fuse_modes = [m for m in modes if mode_of(m)[1]]
    columns = ["native", *modes]
    table: dict[str, dict[str, float]] = {}
    requests: dict[str, dict[str, Counter[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
        scratch = Path(tmp)
        floor_us, _ = floor_cost(scratch, args.cost_files, args.cost_rounds)
        costs = {m: request_cost(m, scratch, args.cost_files, args.cost_rounds) for m in fuse_modes}
        source = scratch / "source-repo"
        source.mkdir()
        make_repo(source, args.repo_files)
        for round_ in range(args.rounds):
            for column in columns if not args.only_requests else modes:
                with target_for(column, scratch) as (where, counts):
                    counts = counts if round_ == 0 else None  # counted once
                    results = bench_git(where, source)
                    if counts is not None:
                        requests.setdefault("git workload", {})[column] = counts.since_last()
                    shutil.rmtree(where / "clone")
                    if counts is not None:
                        counts.since_last()
                    if not args.only_requests:
                        steps: dict[str, Counter[str]] = {}
                        results |= bench_small_files(where, args.files, counts, steps)
                        for step, done in steps.items():
                            requests.setdefault(step, {})[column] = done
                        results |= bench_big_file(where, args.gib, args.random_reads)
                        if counts is not None:
                            results["mount peak RSS (MiB)"] = peak_rss_mib(counts.pid)
                for key, value in results.items():
                    best = max if "MB/s" in key or "RSS" in key else min
                    row = table.setdefault(key, {})
                    row[column] = best(row.get(column, value), value)
                print(f"# {column} done (round {round_ + 1} of {args.rounds})", flush=True)
    if not args.only_requests:
        print_table(table, columns)
    for workload, by_mode in requests.items():
        print(f"\nkernel requests, {workload}:\n")
        print_counts(by_mode, fuse_modes)
    print("\ncost of one request (stat, nothing cached):\n")
    print("| filesystem | µs per request | x floor |")
    print("|---|---:|---:|")
    print(f"| floor (pyfuse3, from memory) | {floor_us:.1f} | 1.0x |")
    for mode, cost in costs.items():
        print(f"| {mode} | {cost:.1f} | {cost / floor_us:.1f}x |")


def print_counts(by_mode: dict[str, Counter[str]], modes: list[str]) -> None:
    kinds = sorted(
        {k for c in by_mode.values() for k in c}, key=lambda k: -max(c[k] for c in by_mode.values())
    )
    shown = [m for m in modes if m in by_mode]
    print("| request | " + " | ".join(shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(f"{by_mode[m][kind]:,}" for m in shown) + " |")
    totals = " | ".join(f"{sum(by_mode[m].values()):,}" for m in shown)
    print(f"| all | {totals} |")


def print_table(table: dict[str, dict[str, float]], columns: list[str]) -> None:
    header = ["workload", *(c if c == "native" else f"{c} (x native)" for c in columns)]
    rows = []
    for workload, values in table.items():
        native = values.get("native")
        cells = [workload]
        for column in columns:
            value = values.get(column)
            if value is None:
                cells.append("-")
            elif column == "native" or not native:
                cells.append(f"{value:.2f}")
            else:
                cells.append(f"{value:.2f} ({value / native:.1f}x)")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
