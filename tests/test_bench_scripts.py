"""Every script in bench/ runs to the end at its smallest settings, as a separate
process the way it is run by hand, and prints its table with every column and row
it promises, each row with figures in it. The figures themselves are not judged:
on a shared machine they say nothing. What is checked is that no script has
drifted from the code it measures (an import, a lookup, an API it calls), and
that it leaves nothing behind in the temporary directory."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, require_mode

MODES = ("sqlite", "disk", "hybrid")
LEADING_NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?")


def fuse_missing() -> str | None:
    """What this machine lacks for a FUSE mount, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not on PATH"
    if importlib.util.find_spec("pyfuse3") is None:
        return "pyfuse3 (the fuse extra) is not installed"
    return None


def require_fuse(script: str) -> None:
    missing = fuse_missing()
    if missing:
        pytest.skip(f"{script} mounts through FUSE: {missing}")


def bench_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a bench script: its scratch files in ``tmp_path/scratch``
    (TMPDIR, BENCH_DIR), a home of its own, and this tree's ``vfs`` importable.

    Only ``vfs``, as an installed agentvfs has it: with the repository root on
    the path its backends/ folder would import as a top-level ``backends`` too,
    and a script that looked its engines up there would pass here and find none
    for everyone else.
    """
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    packages = tmp_path / "packages"
    if not packages.exists():
        packages.mkdir()
        (packages / "vfs").symlink_to(REPO / "vfs")
    kept = [
        entry
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != REPO
    ]
    return {
        **os.environ,
        "TMPDIR": str(scratch),
        "BENCH_DIR": str(scratch),
        "AGENT_VFS_HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join([str(packages), *kept]),
    }


def run_bench(tmp_path: Path, script: str, *args: str) -> str:
    """Run ``bench/<script>``; return its stdout once it exited 0 and left no scratch files."""
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=REPO,
        env=bench_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr}"
    left = sorted(p.name for p in (tmp_path / "scratch").iterdir())
    assert left == [], f"{script} left scratch files behind: {left}"
    return result.stdout


def is_number(cell: str) -> bool:
    """A figure, with or without what follows it: ``1,327,104``, ``424.2 (0.17x)``,
    ``7 / 125``, ``12.0 KiB``."""
    return LEADING_NUMBER.match(cell) is not None


def markdown_tables(out: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every ``| a | b |`` table in ``out``: its header cells and its rows' cells."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and "---" in lines[i + 1]:
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def table_named(out: str, first: str, nth: int = 0) -> tuple[list[str], list[list[str]]]:
    """The ``nth`` markdown table whose first header cell is ``first``."""
    found = [t for t in markdown_tables(out) if t[0][0] == first]
    assert len(found) > nth, f"no table headed {first!r} in:\n{out}"
    return found[nth]


def assert_figures(rows: list[list[str]], header: list[str]) -> None:
    """Each row has a cell per column; each cell past the label is a figure or
    ``-`` (not applicable), and each row has at least one figure."""
    assert rows, f"table {header} has no rows"
    for row in rows:
        assert len(row) == len(header), (header, row)
        assert all(is_number(c) or c == "-" for c in row[1:]), (header, row)
        assert any(is_number(c) for c in row[1:]), (header, row)


def spaced_columns(line: str) -> list[str]:
    """The cells of a line of a table laid out with spaces (two or more between cells)."""
    return re.split(r"\s{2,}", line.strip())


def bench_py_table(out: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """bench.py's columns, and each row's cell per column (right-aligned, 18 wide)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    columns = spaced_columns(lines[start])[1:]
    label_width = len(lines[start]) - 18 * len(columns)
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = [
            line[label_width + 18 * i : label_width + 18 * (i + 1)] for i in range(len(columns))
        ]
        rows[line[:label_width].strip()] = dict(
            zip(columns, (c.strip() for c in cells), strict=True)
        )
    return columns, rows


def test_bench_py_measures_every_mode_beside_local_files(tmp_path: Path) -> None:
    for mode in MODES:
        require_mode(mode)
    out = run_bench(
        tmp_path,
        "bench.py",
        "--files",
        "20",
        "--stream-mib",
        "1",
        "--repeat",
        "1",
        "--scale",
        "100",
    )
    columns, rows = bench_py_table(out)
    assert columns == ["local", *MODES]
    small = [
        "write one by one (µs/file)",
        "write in one transaction (µs/file)",
        "read (µs/file)",
        "info (µs/file)",
        "ls of N (ms)",
        "stream write (MB/s)",
        "stream read (MB/s)",
        "peak RSS (MiB)",
    ]
    scale = [
        f"{row} @{files} in one dir"
        for row in (
            "write one by one (µs/file)",
            "read (µs/file)",
            "info (µs/file)",
            "ls (µs/entry)",
        )
        for files in (100, 20)  # the scale, and the same run's baseline of --files
    ]
    assert set(small + scale + ["database bytes per file (metadata)"]) <= set(rows), list(rows)
    for row, cells in rows.items():
        assert all(is_number(cells[mode]) for mode in MODES), (row, cells)
        if (
            row != "database bytes per file (metadata)"
        ):  # the one row LocalFileSystem has no figure for
            assert is_number(cells["local"]), (row, cells)


def test_bench_py_sweeps_chunk_sizes_in_sqlite_mode(tmp_path: Path) -> None:
    require_mode("sqlite")
    out = run_bench(
        tmp_path, "bench.py", "--chunk-sizes", "16384,65536",
        "--files", "20", "--stream-mib", "1", "--repeat", "1",
    )  # fmt: skip
    columns, rows = bench_py_table(out)
    assert columns == ["local", "sqlite 16K", "sqlite 64K"]
    assert "stream write (MB/s)" in rows
    for row, cells in rows.items():
        assert all(is_number(c) for c in cells.values()), (row, cells)


def test_bench_backup_times_backup_and_restore_locally_and_on_s3(tmp_path: Path) -> None:
    moto = Path(sys.executable).with_name("moto_server")
    s3 = moto.exists() or shutil.which("moto_server") is not None
    out = run_bench(tmp_path, "bench_backup.py", "--mib", "1", *([] if s3 else ["--no-s3"]))
    header, rows = table_named(out, "operation")
    assert header == ["operation", "seconds", "MB/s of content", "bytes written"]
    targets = ["local", "S3 loopback"] if s3 else ["local"]
    expected = ["tar -cf of the same tree (local)"] + [
        f"{step} ({target})"
        for target in targets
        for step in ("backup, first", "backup, unchanged", "restore")
    ]
    assert [r[0] for r in rows] == expected
    assert_figures(rows, header)


def test_bench_blobs_compares_blob_store_by_file_size(tmp_path: Path) -> None:
    out = run_bench(
        tmp_path, "bench_blobs.py", "--mib", "1", "--sizes", "4096,1048576", "--repeat", "1"
    )
    header, rows = table_named(out, "file size")
    assert header == ["file size", "files", "LocalFileSystem", "sqlite", "sqlite + blob store"]
    assert [r[:2] for r in rows] == [["4 KiB", "256"], ["1 MiB", "1"]]
    assert_figures(rows, header)
    assert all(re.fullmatch(r"\d+ / \d+", c) for r in rows for c in r[2:]), rows


def test_bench_checkpoints_times_each_step_in_sqlite_and_disk_mode(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "bench_checkpoints.py", "--files", "100", "--mib", "1", "--disk")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("operation"))
    assert spaced_columns(lines[start]) == ["operation", "seconds", "bytes added", "WAL written"]
    rows = [spaced_columns(line) for line in lines[start + 1 :]]
    steps = [
        "checkpoint",
        "second checkpoint",
        "rollback (1% rewritten)",
        "rollback (10% replaced)",
        "delete checkpoint",
    ]
    assert [r[0] for r in rows] == [
        f"{mode}: {step}" for mode in ("sqlite", "disk") for step in steps
    ]
    for row in rows:
        assert len(row) == 4 and all(is_number(c) for c in row[1:]), row


def test_bench_stores_reports_a_rate_for_every_store_operation(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "bench_stores.py", "--quick")
    lines = out.splitlines()
    assert spaced_columns(lines[0]) == ["operation", "count", "per second"]
    rows = [spaced_columns(line) for line in lines[2:]]
    assert [r[0] for r in rows] == [
        "transcript append, 1 process",
        "transcript append, 8 processes",
        "session patch (one field)",
        "cache set (1 KiB)",
        "cache get (hit)",
        "artifact attach (64 KiB)",
        "legacy import (lines)",
        "legacy re-import, nothing new (lines)",
    ]
    for row in rows:
        assert len(row) == 3 and all(is_number(c) for c in row[1:]), row


def test_bench_tools_runs_grep_and_glob_natively_mounted_and_as_tools(tmp_path: Path) -> None:
    require_fuse("bench_tools.py")
    out = run_bench(tmp_path, "bench_tools.py", "--files", "30", "--repeat", "1")
    header, rows = table_named(out, "workload")
    # Disk mode mounts as a bind mount where the kernel lets this process, else via FUSE.
    assert re.fullmatch(r"mount disk \((bind|fuse)\)", header[3]), header
    assert header[:3] + header[4:] == [
        "workload", "native", "mount sqlite (fuse)", "tools sqlite", "tools disk", "tools hybrid"
    ]  # fmt: skip
    # The script stops unless every column found the same matches: 3 lines, 20 paths.
    assert [r[0] for r in rows] == ["grep (3 matching lines)", "glob / find (20 paths)"]
    assert_figures(rows, header)


def test_bench_overlay_compares_hybrid_with_disk_sqlite_and_overlayfs(tmp_path: Path) -> None:
    fuse = fuse_missing() is None
    args = ["--files", "20", "--stream-mib", "1", "--repo-files", "20", "--edits", "5"]
    out = run_bench(tmp_path, "bench_overlay.py", *args, *([] if fuse else ["--no-mount"]))
    header, rows = table_named(out, "mode")
    assert header == [
        "mode",
        "write files",
        "read files",
        "ls (1 dir)",
        "stream write",
        "stream read",
    ]
    assert [r[0] for r in rows] == ["disk", "sqlite", "hybrid", "hybrid, reads from the lower tree"]
    assert_figures(rows, header)
    mounted = [t for t in markdown_tables(out) if t[0][0] == "tree"]
    if not fuse:  # --no-mount: the second table is left out
        assert mounted == []
        return
    header, rows = mounted[0]
    assert header == ["tree", "git status", "edit files", "git status again", "read all files"]
    # The script leaves fuse-overlayfs out where it is not installed.
    trees = ["disk directory (no FUSE)", "agentvfs hybrid mount"]
    trees += ["fuse-overlayfs"] if shutil.which("fuse-overlayfs") else []
    assert [r[0] for r in rows] == trees
    assert_figures(rows, header)


def test_bench_mount_measures_each_mount_against_native_and_the_floor(tmp_path: Path) -> None:
    require_fuse("bench_mount.py")
    # disk-bind needs a bind mount, which only root may make; without root the
    # script stops at disk mode, so it runs without it.
    modes = list(MODES) if os.geteuid() == 0 else ["sqlite", "hybrid"]
    for mode in modes:
        require_mode(mode)
    out = run_bench(
        tmp_path, "bench_mount.py", "--modes", ",".join(modes), "--gib", "0.001",
        "--files", "20", "--repo-files", "20", "--random-reads", "10",
        "--cost-files", "20", "--cost-rounds", "1",
    )  # fmt: skip
    targets = [t for m in modes for t in (["disk-bind", "disk-fuse"] if m == "disk" else [m])]
    fuse_targets = [t for t in targets if t != "disk-bind"]
    header, rows = table_named(out, "workload")
    assert header == ["workload", "native", *(f"{t} (x native)" for t in targets)]
    workloads = [r[0] for r in rows]
    for expected in ("git clone", "git status", "git commit", "create 20 files", "stat 20 files"):
        assert expected in workloads, workloads
    assert "mount peak RSS (MiB)" in workloads
    assert_figures(rows, header)
    header, rows = table_named(out, "request")  # the git workload's kernel requests
    assert header == ["request", *fuse_targets]
    assert rows[-1][0] == "all"
    assert_figures(rows, header)
    header, rows = table_named(out, "filesystem")
    assert [r[0] for r in rows] == ["floor (pyfuse3, from memory)", *fuse_targets]
    assert_figures(rows, header)


def test_floor_fs_answers_lookups_from_memory_and_counts_them(tmp_path: Path) -> None:
    require_fuse("floor_fs.py")
    where, counts = tmp_path / "mnt", tmp_path / "counts.json"
    where.mkdir()
    process = subprocess.Popen(
        [sys.executable, "bench/floor_fs.py", str(where), "3", str(counts)],
        cwd=REPO,
        env=bench_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            assert time.monotonic() < deadline, "floor_fs.py said ready but never mounted"
            time.sleep(0.01)
        assert stat.S_ISREG(os.stat(where / "f00002").st_mode)
        with pytest.raises(FileNotFoundError):
            os.stat(where / "f00003")
    finally:
        subprocess.run(["fusermount3", "-u", str(where)], check=False, capture_output=True)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    found = json.loads(counts.read_text())
    assert found["lookup"] >= 2, found  # one hit, one miss: nothing is cached
