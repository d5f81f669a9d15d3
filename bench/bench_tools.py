"""Benchmark grep and glob of vfs.tools against grep -r / find, natively and through a mount.

Usage: ``python bench/bench_tools.py [--files 10000] [--repeat 3]``

Generates a tree of text files, loads it into a sqlite-mode agent, makes a
disk-mode agent (and a hybrid one) over a native copy, and prints one table:
the best of ``--repeat`` wall-clock runs of each search, warm caches. Every
runner must find the same number of matches, or the script stops.
"""

from __future__ import annotations

import argparse
import functools
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vfs import Workspace
from vfs.mount.process import start, stop
from vfs.tools import FileTools
from vfs.tools.specs import MAX_RESULTS

PATTERN = r"NEEDLE_[0-9]+"
NAME_GLOB = "*.py"


def make_tree(root: Path, files: int) -> None:
    rng = random.Random(7)
    for i in range(files):
        suffix = ".py" if i % 3 else ".txt"
        path = root / f"pkg{i % 50:02d}" / f"mod{i % 4}" / f"file{i:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"value_{rng.randrange(10**9)} = {rng.random()}\n" for _ in range(40)]
        if i % 10 == 0:
            lines[rng.randrange(len(lines))] = f"# NEEDLE_{i}\n"
        path.write_text("".join(lines))


def load_sqlite(ws: Workspace, source: Path) -> None:
    with ws.fs.transaction:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                ws.fs.pipe_file("/" + str(path.relative_to(source)), path.read_bytes())


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, found = [], -1
    for _ in range(repeat):
        started = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - started)
    return min(times), found


def native_grep(root: Path) -> int:
    done = subprocess.run(
        ["grep", "-rnE", PATTERN, "."], cwd=root, capture_output=True, text=True, check=False
    )
    return len(done.stdout.splitlines())


def native_find(root: Path) -> int:
    done = subprocess.run(
        ["find", ".", "-type", "f", "-name", NAME_GLOB],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return len(done.stdout.splitlines())


def tools_grep(tools: FileTools) -> int:
    found = tools.call("grep", {"pattern": PATTERN, "limit": MAX_RESULTS})
    assert not found["truncated"]
    return len(found["matches"])


def tools_glob(tools: FileTools) -> int:
    found = tools.call("glob", {"pattern": f"**/{NAME_GLOB}", "limit": MAX_RESULTS})
    assert not found["truncated"]
    return len(found["paths"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="vfs-bench-tools-"))
    try:
        native = base / "native"
        make_tree(native, args.files)
        home = base / "home"
        columns: dict[str, dict[str, tuple[float, int]]] = {}
        columns["native"] = {
            "grep": best(lambda: native_grep(native), args.repeat),
            "glob": best(lambda: native_find(native), args.repeat),
        }
        Workspace.create("sq", home, mode="sqlite").close()
        with Workspace.open("sq", home) as ws:
            load_sqlite(ws, native)
        Workspace.create("dk", home, mode="disk", workspace=native).close()
        # No two agents may share a workspace: the hybrid one reads a copy of the tree.
        lower = base / "lower"
        shutil.copytree(native, lower)
        Workspace.create("hy", home, mode="hybrid", workspace=lower).close()
        for agent, mode in [("sq", "sqlite"), ("dk", "disk")]:
            where = base / f"mnt-{agent}"
            where.mkdir()
            mount = start(agent, where, home=home)  # disk: a bind mount, where root
            try:
                columns[f"mount {mode} ({mount.kind})"] = {
                    "grep": best(functools.partial(native_grep, where), args.repeat),
                    "glob": best(functools.partial(native_find, where), args.repeat),
                }
            finally:
                stop(mount)
        for agent, mode in [("sq", "sqlite"), ("dk", "disk"), ("hy", "hybrid")]:
            with Workspace.open(agent, home) as ws:
                tools = FileTools(ws, read_only=True)
                columns[f"tools {mode}"] = {
                    "grep": best(functools.partial(tools_grep, tools), args.repeat),
                    "glob": best(functools.partial(tools_glob, tools), args.repeat),
                }
        for workload in ("grep", "glob"):
            counts = {name: column[workload][1] for name, column in columns.items()}
            assert len(set(counts.values())) == 1, f"{workload} results differ: {counts}"
        print(
            f"{args.files:,} files, best of {args.repeat} (s); grep -rnE '{PATTERN}', glob '**/{NAME_GLOB}'"
        )
        print("| workload | " + " | ".join(columns) + " |")
        print("| --- |" + " ---: |" * len(columns))
        labels = {
            "grep": f"grep ({columns['native']['grep'][1]} matching lines)",
            "glob": f"glob / find ({columns['native']['glob'][1]} paths)",
        }
        for workload, label in labels.items():
            cells = [f"{column[workload][0]:.3f}" for column in columns.values()]
            print(f"| {label} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
