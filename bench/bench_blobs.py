"""sqlite mode with and without the blob store, beside LocalFileSystem, by file size.

    python bench/bench_blobs.py [--mib 64] [--sizes 4096,65536,1048576,16777216] [--repeat 3]

For each file size, --mib of random content is written as files of that size
(``fs.pipe``), the workspace is closed and opened again, and every file is read
back (``fs.cat``). Columns: fsspec's LocalFileSystem on the same disk; sqlite
mode with every chunk in the database (``blob_threshold = 0``); sqlite mode
with every chunk in a local blob store (``blob_threshold = 1``). Each cell is
the median of --repeat interleaved runs, in MB/s of content.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsspec.implementations.local import LocalFileSystem

from vfs import Workspace

COLUMNS = ("LocalFileSystem", "sqlite", "sqlite + blob store")


def _run(
    column: str, base: Path, payloads: list[bytes]
) -> tuple[float, float]:  # (write s, read s)
    if column == "LocalFileSystem":
        fs = LocalFileSystem()
        root = str(base / "local")
        fs.makedirs(root, exist_ok=True)
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            fs.pipe_file(f"{root}/f{i}", data)
        os.sync()  # the database commits are on disk (WAL, synchronous=NORMAL) too
        written = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(len(payloads)):
            fs.cat_file(f"{root}/f{i}")
        return written, time.perf_counter() - start
    home = base / "home"
    home.mkdir()
    threshold = 0 if column == "sqlite" else 1
    (home / "config.toml").write_text(tomli_w.dumps({"defaults": {"blob_threshold": threshold}}))
    with Workspace.create("bench", home, mode="sqlite") as ws:
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            ws.fs.pipe_file(f"/f{i}", data)
        os.sync()
        written = time.perf_counter() - start
    with Workspace.open("bench", home) as ws:
        start = time.perf_counter()
        for i in range(len(payloads)):
            ws.fs.cat_file(f"/f{i}")
        return written, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--sizes", default="4096,65536,1048576,16777216")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.mib} MiB per size, median of {args.repeat}, MB/s (write / read)")
    print(f"| file size | files | {' | '.join(COLUMNS)} |")
    print(f"| ---: | ---: |{' ---: |' * len(COLUMNS)}")
    for size in sizes:
        count = max(1, (args.mib << 20) // size)
        payloads = [os.urandom(size) for _ in range(count)]
        total = size * count / 1e6
        runs: dict[str, list[tuple[float, float]]] = {c: [] for c in COLUMNS}
        for _ in range(args.repeat):
            for column in COLUMNS:
                base = Path(tempfile.mkdtemp(prefix="bench-blobs-"))
                try:
                    runs[column].append(_run(column, base, payloads))
                finally:
                    shutil.rmtree(base)
        cells = []
        for column in COLUMNS:
            write = statistics.median(r[0] for r in runs[column])
            read = statistics.median(r[1] for r in runs[column])
            cells.append(f"{total / write:.0f} / {total / read:.0f}")
        label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
        print(f"| {label} | {count} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
