"""Readers never fail, and never see a mix of versions, while another process
keeps replacing the file they read: as on a local filesystem, every read gets
the old content or the new, in every mode and through every front end.

A writer process replaces ``/shared.txt`` through fsspec (an atomic whole-file
replace) in a loop while reader processes read it (see
``tests/support/replace_race.py``). In hybrid mode the file starts in the lower
tree, so the first replacement also moves it from the lower layer to the upper.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_mount_support import mount_agent, requires_fuse

from tests.support.replace_race import is_version, version
from vfs import Workspace
from vfs.state.registry import MODES

REPO = Path(__file__).resolve().parent.parent
AGENT = "alice"
SHARED = "/shared.txt"
# Replacements that must land while the readers run, or the race was not run.
MIN_WRITES = 20


@pytest.fixture(params=MODES)
def shared(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Path:
    """A home whose agent (in each mode) has ``/shared.txt``; returns the home."""
    mode = request.param
    if mode == "hybrid":
        lower = tmp_path / "lower"
        lower.mkdir()
        (lower / SHARED.lstrip("/")).write_bytes(version(0))
        Workspace.create(AGENT, home, mode=mode, workspace=lower).close()
    else:
        with Workspace.create(AGENT, home, mode=mode) as ws:
            ws.fs.pipe(SHARED, version(0))
    return home


def _stop(home: Path) -> Path:
    return home.parent / "stop-writer"


def _side(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.replace_race", *args]


@contextmanager
def replacing(home: Path) -> Iterator[dict[str, int]]:
    """A writer process replacing the shared file until the block ends; the
    dict it yields holds, afterwards, how many replacements it made."""
    stop = _stop(home)
    writer = subprocess.Popen(
        _side("write", str(home), AGENT, SHARED, str(stop)),
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    done: dict[str, int] = {}
    try:
        yield done
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0
    done.update(json.loads(out))


def start_reader(front: str, home: Path, path: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _side("read", front, str(home), AGENT, path, str(count), str(_stop(home))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def result(reader: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    return dict(json.loads(out))


def race(home: Path, readers: dict[str, tuple[str, int]]) -> dict[str, dict[str, Any]]:
    """Run the readers (name -> (front end, reads)) against the writer.

    The readers start with the writer's first replacement, so that one (in
    hybrid mode, the one that moves the file from the lower layer up) races
    them too.
    """
    started = {
        name: start_reader(front, home, path_for(front, home), count)
        for name, (front, count) in readers.items()
    }
    with replacing(home) as writes:
        results = {name: result(reader) for name, reader in started.items()}
    assert writes["writes"] >= MIN_WRITES, writes
    return results


def reads_for(kind: str, through_fuse: int) -> int:
    """Reads enough to span the writer's replacements: a bind mount (disk mode)
    reads at native speed, some 50 times as many in the same time as FUSE."""
    return through_fuse if kind == "fuse" else through_fuse * 50


def path_for(front: str, home: Path) -> str:
    return str(home.parent / "mnt" / SHARED.lstrip("/")) if front.startswith("mount") else SHARED


def assert_clean(results: dict[str, dict[str, Any]]) -> None:
    problems = {
        name: r for name, r in results.items() if r["failed"] or r["mixed"] or not r["reads"]
    }
    assert not problems, problems


def test_fsspec_open_and_cat_never_fail_while_another_process_replaces_the_file(shared):
    results = race(shared, {"open": ("open", 1500), "cat": ("cat", 1500)})
    assert_clean(results)


def test_vfs_cat_never_fails_while_another_process_replaces_the_file(shared):
    # The command in-process many times, and the installed command a few times.
    results = race(shared, {"cat command": ("cli", 250), "vfs process": ("vfs", 4)})
    assert_clean(results)


def test_file_tools_artifacts_and_export_never_fail_while_another_process_replaces_the_file(
    shared,
):
    results = race(
        shared,
        {"tools": ("tools", 400), "artifacts": ("artifacts", 300), "export": ("export", 150)},
    )
    assert_clean(results)


@requires_fuse
def test_reads_through_a_mount_never_fail_while_another_process_replaces_the_file(shared):
    with mount_agent(shared, shared.parent / "mnt", AGENT) as mounted:
        results = race(shared, {"read": ("mount", reads_for(mounted.kind, 500))})
    assert_clean(results)


@requires_fuse
def test_open_for_write_through_a_mount_never_fails_while_another_process_replaces_the_file(
    shared,
):
    with mount_agent(shared, shared.parent / "mnt", AGENT) as mounted:
        results = race(shared, {"write": ("mount-write", reads_for(mounted.kind, 300))})
    assert_clean(results)
    with Workspace.open(AGENT, shared) as ws:
        assert is_version(ws.fs.cat(SHARED))
