"""A mode switch that cannot succeed is refused before it moves anything; one that fails
midway leaves the agent usable in its old mode, to be completed or undone."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.helpers import disk_tree, run_vfs, workspace_tree
from vfs import Workspace
from vfs.settings.switch import UnfinishedSwitchWarning, abort_switch, switch_mode

VFS = Path(sys.executable).with_name("vfs")
CHAIN = "/".join(["d" * 250] * 10)  # 2,510 bytes: two of them nested pass PATH_MAX


def agent_files(home: Path) -> Path:
    return home / "agents" / "alice"


def deep_sqlite_agent(home: Path) -> None:
    """A sqlite agent whose deepest path is longer than PATH_MAX; no one path given was."""
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe(f"/p/{CHAIN}/x", b"x")
        ws.fs.pipe(f"/q/{CHAIN}/y", b"y")
        ws.fs.mv("/q", f"/p/{CHAIN}/q", recursive=True)
        ws.fs.pipe("/keep.txt", b"k")


def assert_usable_in(home: Path, mode: str) -> None:
    for args in (("cat", "alice:/keep.txt"), ("ls", "alice:/"), ("info", "alice")):
        result = run_vfs(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert run_vfs("cat", "alice:/keep.txt").stdout == "k"
    assert run_vfs("mode", "alice").stdout.strip() == mode


@pytest.mark.parametrize("target", ["disk", "hybrid"])
def test_a_tree_deeper_than_path_max_is_refused_before_the_switch_starts(home, target):
    deep_sqlite_agent(home)
    result = run_vfs("mode", "alice", target)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"cannot switch alice to {target} mode" in lines[0]
    assert "over the limit of 4095" in lines[0] and len(lines[0]) < 300
    assert_usable_in(home, "sqlite")
    assert not {"switch.pending", "switch.failed"} & set(os.listdir(agent_files(home)))
    assert not (agent_files(home) / "workspace").exists() or not os.listdir(
        agent_files(home) / "workspace"
    )
    with pytest.raises(OSError) as refused:
        switch_mode("alice", target, home)
    assert refused.value.errno == errno.ENAMETOOLONG


@pytest.mark.parametrize("source", ["disk", "hybrid"])
def test_a_non_utf8_name_on_disk_is_refused_on_the_way_to_sqlite(home, tmp_path, source):
    tree = tmp_path / "tree"
    tree.mkdir()
    with Workspace.create("alice", home, mode=source, workspace=tree) as ws:
        ws.fs.pipe("/keep.txt", b"k")
    if source == "hybrid":
        (tree / "keep.txt").write_bytes(b"k")
    (tree / "sub").mkdir()
    (Path(os.fsdecode(bytes(tree / "sub") + b"/bad\xff.txt"))).write_bytes(b"bad")
    before = disk_tree(tree)
    result = run_vfs("mode", "alice", "sqlite")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: cannot switch alice to sqlite mode: /sub/bad\\xff.txt is not a UTF-8 name,"
        " which the database cannot hold; rename it on disk first"
    ]
    assert disk_tree(tree) == before
    assert_usable_in(home, source)
    with pytest.raises(OSError) as refused:
        switch_mode("alice", "sqlite", home)
    assert refused.value.errno == errno.EILSEQ


def test_content_larger_than_the_free_space_is_refused_before_the_switch_starts(home, tmp_path):
    st = os.statvfs(tmp_path)
    if st.f_bavail * st.f_frsize > 1 << 43:
        pytest.skip("the test filesystem has more than 8 TiB free: the sparse file would fit")
    tree = tmp_path / "tree"
    tree.mkdir()
    with Workspace.create("alice", home, mode="disk", workspace=tree) as ws:
        ws.fs.pipe("/keep.txt", b"k")
    with open(tree / "sparse.img", "wb") as sparse:
        sparse.truncate(1 << 43)  # 8 TiB, apparently: more than the disk holds
    result = run_vfs("mode", "alice", "sqlite")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot switch alice to sqlite mode" in lines[0]
    assert f"{(1 << 43) + 1} bytes to move" in lines[0]
    assert_usable_in(home, "disk")
    with pytest.raises(OSError) as refused:
        switch_mode("alice", "sqlite", home)
    assert refused.value.errno == errno.ENOSPC


@pytest.mark.parametrize("mode", ["sqlite", "disk", "hybrid"])
def test_a_path_longer_than_path_max_is_refused_like_a_local_filesystem(home, tmp_path, mode):
    too_long = "/" + "/".join(["d" * 250] * 20) + "/x"
    (tmp_path / "tree").mkdir()
    with Workspace.create("alice", home, mode=mode, workspace=tmp_path / "tree") as ws:
        with pytest.raises(OSError) as refused:
            ws.fs.pipe(too_long, b"x")
        assert refused.value.errno == errno.ENAMETOOLONG
        with pytest.raises(OSError) as refused:
            ws.fs.makedirs(too_long)
        assert refused.value.errno == errno.ENAMETOOLONG
        ws.fs.pipe("/" + "/".join(["d" * 250] * 16) + "/x", b"fits")  # 4,018 bytes
    result = run_vfs("mkdir", "-p", f"alice:{too_long}")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "too long" in result.stderr.lower()


def run_vfs_with_file_size_limit(*args: str, limit: int) -> subprocess.CompletedProcess[str]:
    """``vfs ARGS`` that cannot write any file past ``limit`` bytes (EFBIG), as a full disk."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [str(VFS), *args], capture_output=True, text=True, timeout=120, preexec_fn=limited
    )


def half_switched_agent(home: Path) -> dict[str, bytes | None]:
    """A sqlite agent whose switch to disk mode failed writing its big file."""
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/a/keep.txt", b"k")
        ws.fs.pipe("/keep.txt", b"k")
        ws.fs.pipe("/z/big.bin", bytes(3 << 20))  # zeros: a few shared chunks in the database
        expected = workspace_tree(ws)
    failed = run_vfs_with_file_size_limit("mode", "alice", "disk", limit=1 << 20)
    assert failed.returncode == 1, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr
    assert "the switch of alice from sqlite to disk mode stopped" in lines[0]
    assert "`vfs mode alice disk`" in lines[0] and "`vfs mode alice --abort`" in lines[0]
    return expected


def test_after_a_switch_fails_midway_the_agent_works_in_its_old_mode_with_a_warning(home):
    expected = half_switched_agent(home)
    for args in (("cat", "alice:/keep.txt"), ("ls", "alice:/"), ("info", "alice")):
        result = run_vfs(*args)
        assert result.returncode == 0, (args, result.stderr)
        warning = result.stderr.strip().splitlines()
        assert len(warning) == 1 and warning[0].startswith("warning: the switch of alice")
        assert "`vfs mode alice disk`" in warning[0]
    assert run_vfs("cat", "alice:/keep.txt").stdout == "k"
    shown = run_vfs("mode", "alice")
    assert shown.stdout.strip() == "sqlite"
    assert shown.stderr.startswith("warning: the switch of alice from sqlite to disk mode")
    shown = run_vfs("mode", "alice", "--json")
    assert json.loads(shown.stdout)["unfinished_switch"] == {
        "from_mode": "sqlite", "to_mode": "disk", "force": False, "error": "File too large"
    }  # fmt: skip
    with pytest.warns(UnfinishedSwitchWarning), Workspace.open("alice", home) as ws:
        assert workspace_tree(ws) == expected
        assert ws.mode == "sqlite" and not ws.read_only


def test_a_switch_that_failed_midway_completes_once_run_again(home):
    expected = half_switched_agent(home)
    with pytest.warns(UnfinishedSwitchWarning), Workspace.open("alice", home) as ws:
        ws.fs.pipe("/written-meanwhile.txt", b"w")  # the old mode stays writable
        expected = workspace_tree(ws)
    result = run_vfs("mode", "alice", "disk")
    assert result.returncode == 0, result.stderr
    assert "alice: sqlite -> disk" in result.stdout
    assert disk_tree(agent_files(home) / "workspace") == expected
    quiet = run_vfs("cat", "alice:/written-meanwhile.txt")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "w", "")
    assert not (agent_files(home) / "switch.failed").exists()


def test_a_switch_that_failed_midway_can_be_aborted(home):
    expected = half_switched_agent(home)
    result = run_vfs("mode", "alice", "--abort")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice: undid the switch to disk mode; sqlite"
    quiet = run_vfs("cat", "alice:/keep.txt")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "k", "")
    with Workspace.open("alice", home) as ws:
        assert workspace_tree(ws) == expected
    assert abort_switch("alice", home) is None
    again = run_vfs("mode", "alice", "--abort")
    assert (again.returncode, again.stdout.strip()) == (0, "alice has no unfinished mode switch")
    assert run_vfs("mode", "alice", "disk").returncode == 0
    assert disk_tree(agent_files(home) / "workspace") == expected


def test_switching_back_to_the_old_mode_undoes_a_failed_switch(home):
    expected = half_switched_agent(home)
    report = switch_mode("alice", "sqlite", home)
    assert (report.undone, report.to_mode, report.changed) == ("disk", "sqlite", False)
    with Workspace.open("alice", home) as ws:
        assert workspace_tree(ws) == expected


def test_an_interrupted_switch_whose_finish_fails_on_open_leaves_the_agent_readable(home):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/keep.txt", b"k")
        ws.fs.pipe("/z/big.bin", bytes(3 << 20))
        expected = workspace_tree(ws)
    killed = run_vfs("mode", "alice", "disk", kill_after=2)
    assert killed.returncode == -9, killed.stderr
    # The next command finishes the switch first; here that fails (EFBIG) ...
    first = run_vfs_with_file_size_limit("cat", "alice:/keep.txt", limit=1 << 20)
    assert (first.returncode, first.stdout) == (0, "k"), first.stderr
    assert first.stderr.startswith("warning: the switch of alice from sqlite to disk mode")
    # ... and later ones do not retry it on every open, but keep warning.
    second = run_vfs("cat", "alice:/keep.txt")
    assert (second.returncode, second.stdout) == (0, "k")
    assert "`vfs mode alice disk`" in second.stderr
    assert run_vfs("mode", "alice", "disk").returncode == 0
    assert disk_tree(agent_files(home) / "workspace") == expected


def test_a_failed_switch_past_the_mode_flip_opens_read_only_and_can_only_be_finished(home):
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/keep.txt", b"k")
        expected = workspace_tree(ws)
    # steps: recorded, root exported, data complete, mode flipped: killed before the cleanup
    killed = run_vfs("mode", "alice", "disk", kill_after=4)
    assert killed.returncode == -9, killed.stderr
    assert run_vfs("mode", "alice").stdout.strip() == "disk"
    # as a finish that failed on the cleanup leaves it
    (agent_files(home) / "switch.failed").write_text("Input/output error\n")
    with (
        pytest.warns(UnfinishedSwitchWarning, match="read-only"),
        Workspace.open("alice", home) as ws,
    ):
        assert ws.read_only and ws.fs.cat("/keep.txt") == b"k"
        with pytest.raises(OSError):
            ws.fs.pipe("/new.txt", b"lost to the cleanup otherwise")
    result = run_vfs("cat", "alice:/keep.txt")
    assert (result.returncode, result.stdout) == (0, "k")
    assert "read-only until it is finished" in result.stderr
    refused = run_vfs("mode", "alice", "--abort")
    assert refused.returncode == 1
    assert "past the point where it can be undone" in refused.stderr
    finished = run_vfs("mode", "alice", "disk")
    assert finished.returncode == 0, finished.stderr
    assert disk_tree(agent_files(home) / "workspace") == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Workspace.open("alice", home) as ws:
            assert not ws.read_only
            ws.fs.pipe("/new.txt", b"new")
    assert (agent_files(home) / "workspace" / "new.txt").read_bytes() == b"new"


DIRECTIONS = [
    ("disk", "sqlite"),
    ("hybrid", "sqlite"),
    ("sqlite", "hybrid"),
    ("hybrid", "disk"),
]


@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
def test_a_switch_that_fails_midway_in_any_direction_keeps_the_agent_and_completes_later(
    home, tmp_path, source, target
):
    tree = tmp_path / "tree"
    tree.mkdir()
    # Past the file size limit below: random bytes fill the database (or, past the blob
    # threshold, one blob of the blob store), zeros only a file.
    big = os.urandom(3 << 20) if target == "sqlite" else bytes(3 << 20)
    if source != "sqlite":
        (tree / "keep.txt").write_bytes(b"k")
    if (source, target) == ("hybrid", "sqlite"):  # what moves is the lower tree's
        (tree / "z").mkdir()
        (tree / "z" / "big.bin").write_bytes(big)
    with Workspace.create("alice", home, mode=source, workspace=tree) as ws:
        ws.fs.pipe("/keep.txt", b"k")
        if not ws.fs.exists("/z/big.bin"):
            ws.fs.pipe("/z/big.bin", big)
        expected = workspace_tree(ws)
    failed = run_vfs_with_file_size_limit("mode", "alice", target, limit=1 << 20)
    assert failed.returncode == 1, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr, lines
    assert f"the switch of alice from {source} to {target} mode stopped" in lines[0]
    assert f"`vfs mode alice {target}`" in lines[0]
    read = run_vfs("cat", "alice:/keep.txt")
    assert (read.returncode, read.stdout) == (0, "k"), read.stderr
    assert read.stderr.startswith("warning: the switch of alice")
    assert run_vfs("mode", "alice").stdout.strip() == source
    with pytest.warns(UnfinishedSwitchWarning), Workspace.open("alice", home) as ws:
        assert workspace_tree(ws) == expected
    done = run_vfs("mode", "alice", target)
    assert done.returncode == 0, done.stderr
    assert f"alice: {source} -> {target}" in done.stdout
    with Workspace.open("alice", home) as ws:
        assert ws.mode == target
        assert workspace_tree(ws) == expected
