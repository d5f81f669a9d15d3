"""Spilled content keeps working through everything that moves or copies file
content: backups and restores (to another home, to and from s3://), mode
switches, checkpoints, hybrid commits and exports."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from tests.helpers import disk_tree, require_mode, run_vfs
from tests.support.s3_server import s3_server
from tests.test_blobs import BIG, DB_MODES, blob_files, configure, make
from vfs import Workspace
from vfs.backup import backup_agent, restore_agent
from vfs.blob_gc import collect_blobs
from vfs.settings.switch import switch_mode
from vfs.state.registry import Registry

OTHER = os.urandom(4 * 65536)


def fill(ws: Workspace) -> dict[str, bytes]:
    files = {"/big.bin": BIG, "/sub/other.bin": OTHER[:100] + BIG, "/small.txt": b"small"}
    for path, data in files.items():
        ws.fs.pipe(path, data)
    return files


def assert_files(ws: Workspace, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert ws.fs.cat(path) == data, path


@pytest.mark.parametrize("mode", DB_MODES)
def test_a_backup_of_spilled_content_restores_here_and_on_a_home_without_the_store(
    home: Path, tmp_path: Path, mode: str
) -> None:
    configure(home)
    with make(home, tmp_path, mode) as ws:
        files = fill(ws)
        spilled = len(blob_files(ws.directory / "blobs"))
        assert spilled == 2  # a blob per file
    dest = str(tmp_path / "backups")
    assert run_vfs("backup", "alice", dest).returncode == 0
    assert backup_agent("alice", dest, home).new_bytes == 0  # nothing new the second time
    restore_agent(dest, "alice", home, as_name="bob")
    with Workspace.open("bob", home) as ws:
        assert_files(ws, files)
        assert blob_files(ws.directory / "blobs")  # bob's own store
    # Another machine: no blob directory, no settings file.
    other = tmp_path / "other-home"
    restore_agent(dest, "alice", other)
    with Workspace.open("alice", other) as ws:
        assert_files(ws, files)
    for where in (home, other):
        result = run_vfs("--home", str(where), "doctor")
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("first", "second"), [("sqlite", "disk"), ("hybrid", "sqlite")])
def test_mode_switches_carry_spilled_content(
    home: Path, tmp_path: Path, first: str, second: str
) -> None:
    require_mode(first)
    require_mode(second)
    configure(home)
    with make(home, tmp_path, first) as ws:
        files = fill(ws)
    switch_mode("alice", second, home)
    with Workspace.open("alice", home) as ws:
        assert_files(ws, files)
        if second == "disk":
            tree = disk_tree(ws.record.workspace)
            assert tree["big.bin"] == BIG
    switch_mode("alice", first, home)
    with Workspace.open("alice", home) as ws:
        assert_files(ws, files)
    assert run_vfs("doctor", "alice").returncode == 0


def test_a_hybrid_commit_writes_spilled_content_to_the_disk_tree(
    home: Path, tmp_path: Path
) -> None:
    configure(home)
    with make(home, tmp_path, "hybrid") as ws:
        files = fill(ws)
        ws.overlay.commit()
        tree = disk_tree(ws.record.workspace)
        assert tree["big.bin"] == BIG and tree["sub/other.bin"] == files["/sub/other.bin"]
        assert_files(ws, files)


@pytest.mark.parametrize("mode", ("sqlite", "hybrid", "disk"))
def test_a_blob_only_a_checkpoint_uses_is_never_collected(
    home: Path, tmp_path: Path, mode: str
) -> None:
    configure(home, blob_grace=0)
    with make(home, tmp_path, mode) as ws:
        files = fill(ws)
        ws.checkpoints.create("before")
        for path in files:
            ws.fs.rm(path)
        store = ws.directory / "blobs"
        kept = blob_files(store)
        assert kept
        collect_blobs(Registry(home), "alice", delete=True)
        assert blob_files(store) == kept
    with Workspace.open("alice", home, checkpoint="before") as view:
        assert_files(view, files)
    assert run_vfs("rollback", "alice", "before").returncode == 0
    with Workspace.open("alice", home) as ws:
        assert_files(ws, files)
        for path in files:
            ws.fs.rm(path)
        ws.checkpoints.delete("before")
    collect_blobs(Registry(home), "alice", delete=True)
    assert blob_files(store) == []


@pytest.mark.parametrize("mode", DB_MODES)
def test_export_writes_spilled_content(home: Path, tmp_path: Path, mode: str) -> None:
    configure(home)
    with make(home, tmp_path, mode) as ws:
        files = fill(ws)
    out = tmp_path / "export"
    assert run_vfs("export", "alice", str(out)).returncode == 0
    for path, data in files.items():
        assert (out / path.lstrip("/")).read_bytes() == data


# -- a blob store in object storage -------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server() as environment:
        yield environment


@pytest.fixture
def on_s3(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3["FSSPEC_S3_ENDPOINT_URL"]})
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    with contextlib.suppress(FileExistsError):  # one bucket for the module's tests
        s3fs.S3FileSystem().mkdir(f"blobs{os.getpid()}")


def _bucket() -> str:
    return f"s3://blobs{os.getpid()}"


@pytest.mark.usefixtures("on_s3")
def test_a_blob_store_on_s3_is_shared_and_collected_only_when_no_agent_uses_a_blob(
    home: Path, tmp_path: Path
) -> None:
    store = f"{_bucket()}/{tmp_path.name}/shared"
    configure(home, blob_store=store, blob_grace=0)
    with Workspace.create("alice", home) as alice, Workspace.create("bob", home) as bob:
        files = fill(alice)
        bob.fs.pipe("/same.bin", BIG)
        assert_files(alice, files)
        fs = fsspec.filesystem("s3")
        count = len([p for p in fs.find(store) if "/users/" not in p])
        assert count == 2  # bob's copy of BIG is alice's blob
        alice.fs.rm("/big.bin")
        registry = Registry(home)
        assert sum(c.deleted for c in collect_blobs(registry, "alice", delete=True)) == 0
        alice.fs.rm("/sub/other.bin")
        assert sum(c.deleted for c in collect_blobs(registry, "alice", delete=True)) == 1
        assert bob.fs.cat("/same.bin") == BIG
        fs.invalidate_cache()
        fs.rm_file(f"{store}/{_first_key(fs, store)}")
    result = run_vfs("cat", "bob:/same.bin")
    assert result.returncode == 1 and "/same.bin: stored content is missing" in result.stderr


def _first_key(fs: fsspec.AbstractFileSystem, store: str) -> str:
    path = next(p for p in sorted(fs.find(store)) if "/users/" not in p)
    return path[len(store.removeprefix("s3://")) + 1 :]


@pytest.mark.usefixtures("on_s3")
def test_a_backup_to_s3_of_an_agent_with_an_s3_blob_store_restores_elsewhere(
    home: Path, tmp_path: Path
) -> None:
    store = f"{_bucket()}/{tmp_path.name}/store"
    configure(home, blob_store=store)
    with Workspace.create("alice", home) as ws:
        files = fill(ws)
    dest = f"{_bucket()}/{tmp_path.name}/backups"
    assert run_vfs("backup", "alice", dest).returncode == 0
    # A machine that shares the store, and one that does not know it.
    shared, alone = tmp_path / "shared-home", tmp_path / "alone-home"
    configure(shared, blob_store=store)
    for where in (shared, alone):
        restore_agent(dest, "alice", where)
        with Workspace.open("alice", where) as ws:
            assert_files(ws, files)
    assert blob_files(alone / "agents" / "alice" / "blobs")
    assert not (shared / "agents" / "alice" / "blobs").exists()
