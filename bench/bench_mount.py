"""Benchmark the FUSE mount in each workspace mode against a native directory.

Usage: ``python bench/bench_mount.py [--modes disk,sqlite,hybrid] [--gib 1]``

Prints one table: wall-clock seconds (or MB/s, µs) per workload, the ratio to
the native directory, and the mount process's peak RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from vfs import Workspace
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
    shutil.rmtree(clone)
    return results


def bench_small_files(target: Path, count: int) -> dict[str, float]:
    d = target / "small"
    d.mkdir()
    names = [d / f"f{i:05d}" for i in range(count)]
    payload = b"x" * 100

    def create() -> None:
        for name in names:
            with open(name, "wb") as f:
                f.write(payload)

    results = {f"create {count} files": timed(create)}
    results[f"stat {count} files"] = timed(lambda: [os.stat(n) for n in names])
    results[f"readdir {count} files"] = timed(lambda: os.listdir(d))
    results[f"unlink {count} files"] = timed(lambda: list(map(os.unlink, names)))
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


@contextmanager
def target_for(mode: str, scratch: Path) -> Iterator[tuple[Path, int | None]]:
    if mode == "native":
        where = scratch / "native"
        where.mkdir()
        yield where, None
        shutil.rmtree(where)
        return
    home, where = scratch / f"home-{mode}", scratch / f"mnt-{mode}"
    Workspace.create("bench", home, mode=mode).close()
    where.mkdir()
    process = start("bench", where, home=home)
    try:
        yield where, process.pid
    finally:
        stop(process, where)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repo-files", type=int, default=2_000)
    parser.add_argument("--random-reads", type=int, default=5_000)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if importlib.util.find_spec(f"backends.{m}")]
    columns = ["native", *modes]
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
        scratch = Path(tmp)
        source = scratch / "source-repo"
        source.mkdir()
        make_repo(source, args.repo_files)
        for column in columns:
            with target_for(column, scratch) as (where, pid):
                results = bench_git(where, source)
                results |= bench_small_files(where, args.files)
                results |= bench_big_file(where, args.gib, args.random_reads)
                if pid is not None:
                    results["mount peak RSS (MiB)"] = peak_rss_mib(pid)
            for key, value in results.items():
                table.setdefault(key, {})[column] = value
            print(f"# {column} done", flush=True)
    print_table(table, columns)


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
