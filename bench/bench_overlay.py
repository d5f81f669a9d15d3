"""hybrid mode next to disk and sqlite, and a hybrid mount next to fuse-overlayfs.

Run: ``.venv/bin/python bench/bench_overlay.py [--files N] [--stream-mib M]``.
Prints two tables (seconds, lower is better). Everything happens in a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vfs import Workspace

VFS = str(Path(sys.executable).with_name("vfs"))
BLOCK = 1 << 20


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def core_row(
    home: Path, mode: str, files: int, stream_mib: int, lower: Path | None = None
) -> list[float]:
    """write/read N 4 KiB files, ls the directory, stream a large file out and in."""
    agent = f"bench-{mode}-{'lower' if lower else 'upper'}"
    with Workspace.create(agent, home, mode=mode, workspace=lower) as ws:
        fs = ws.fs
        payload = os.urandom(4096)
        if lower is None:
            fs.mkdir("many")
            write = timed(lambda: [fs.pipe(f"many/f{i:05}", payload) for i in range(files)])
        else:
            write = float("nan")  # the files are in the lower tree already
        read = timed(lambda: [fs.cat(f"many/f{i:05}") for i in range(files)])
        listing = timed(lambda: [fs.ls("many", detail=True) for _ in range(10)]) / 10

        def stream_in() -> None:
            with fs.open("big.bin", "wb") as out:
                for _ in range(stream_mib):
                    out.write(payload * 256)

        def stream_out() -> None:
            with fs.open("big.bin", "rb", block_size=BLOCK) as source:
                while source.read(BLOCK):
                    pass

        stream_write = timed(stream_in) if lower is None else float("nan")
        stream_read = timed(stream_out)
    return [write, read, listing, stream_write, stream_read]


def make_lower(root: Path, files: int, stream_mib: int) -> None:
    (root / "many").mkdir(parents=True)
    payload = os.urandom(4096)
    for i in range(files):
        (root / "many" / f"f{i:05}").write_bytes(payload)
    with open(root / "big.bin", "wb") as out:
        for _ in range(stream_mib):
            out.write(payload * 256)


def make_repo(root: Path, files: int) -> None:
    """A git checkout: a few directories of small source files, committed."""
    for i in range(files):
        path = root / f"pkg{i % 20:02}" / f"module{i:05}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {i}\n" + "x = 1\n" * 40)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run([*git, "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "tree"], check=True)


def git_workload(where: Path, edits: int) -> list[float]:
    """git status, edit some files, git status again, read every file."""
    status = ["git", "-C", str(where), "status", "--porcelain"]
    first = timed(lambda: subprocess.run(status, check=True, capture_output=True))

    def edit() -> None:
        for i in range(edits):
            with open(where / f"pkg{i % 20:02}" / f"module{i:05}.py", "a") as stream:
                stream.write("y = 2\n")

    editing = timed(edit)
    second = timed(lambda: subprocess.run(status, check=True, capture_output=True))

    def read_all() -> None:
        for dirpath, dirnames, filenames in os.walk(where):
            if ".git" in dirnames:
                dirnames.remove(".git")
            for name in filenames:
                Path(dirpath, name).read_bytes()

    return [first, editing, second, timed(read_all)]


def mount_rows(base: Path, home: Path, files: int, edits: int) -> list[tuple[str, list[float]]]:
    rows = []
    plain = base / "plain"
    make_repo(plain, files)
    rows.append(("disk directory (no FUSE)", git_workload(plain, edits)))

    lower = base / "hybrid-lower"
    shutil.copytree(plain, lower, symlinks=True)
    Workspace.create("bench-mount", home, mode="hybrid", workspace=lower).close()
    where = base / "hybrid-mnt"
    where.mkdir()
    env = {**os.environ, "AGENT_VFS_HOME": str(home)}
    subprocess.run([VFS, "mount", "bench-mount", str(where)], check=True, env=env)
    try:
        rows.append(("agentvfs hybrid mount", git_workload(where, edits)))
    finally:
        subprocess.run([VFS, "umount", str(where)], check=True, env=env)

    if shutil.which("fuse-overlayfs"):
        lower = base / "ovl-lower"
        shutil.copytree(plain, lower, symlinks=True)
        upper, work, where = base / "ovl-upper", base / "ovl-work", base / "ovl-mnt"
        for path in (upper, work, where):
            path.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        subprocess.run(["fuse-overlayfs", "-o", options, str(where)], check=True)
        try:
            rows.append(("fuse-overlayfs", git_workload(where, edits)))
        finally:
            subprocess.run(["fusermount3", "-u", str(where)], check=True)
    return rows


def table(headers: list[str], rows: list[tuple[str, list[float]]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    for name, values in rows:
        cells = ["-" if v != v else f"{v:.3f}" for v in values]  # NaN: not applicable
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--repo-files", type=int, default=2000)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--no-mount", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-overlay-") as temp:
        base = Path(temp)
        home = base / "home"
        rows = [
            (mode, core_row(home, mode, args.files, args.stream_mib))
            for mode in ("disk", "sqlite", "hybrid")
        ]
        lower = base / "lower"
        make_lower(lower, args.files, args.stream_mib)
        rows.append(
            ("hybrid, reads from the lower tree",
             core_row(home, "hybrid", args.files, args.stream_mib, lower))
        )  # fmt: skip
        print(f"Core workloads: {args.files} x 4 KiB files, {args.stream_mib} MiB stream (s)\n")
        print(
            table(
                ["mode", "write files", "read files", "ls (1 dir)", "stream write", "stream read"],
                rows,
            )
        )
        if not args.no_mount:
            print(f"\nMounted git checkout: {args.repo_files} files, {args.edits} edits (s)\n")
            print(
                table(
                    ["tree", "git status", "edit files", "git status again", "read all files"],
                    mount_rows(base, home, args.repo_files, args.edits),
                )
            )


if __name__ == "__main__":
    main()
