"""A full disk is ENOSPC, never EIO; deleting still works; close reports a lost
write once and closes."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from tests.helpers import require_mode, run_vfs, small_tmpfs
from vfs import Workspace
from vfs.state.registry import MODES


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, so that a real ENOSPC happens quickly."""
    with small_tmpfs(tmp_path / "small", "8m") as mountpoint:
        yield mountpoint


def fill_up(where: Path) -> None:
    """Take every byte left on the disk that holds ``where``."""
    fd = os.open(where / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def full_workspace(disk: Path, mode: str) -> Workspace:
    """A workspace whose files filled the disk (ENOSPC), then a ballast the rest."""
    require_mode(mode)
    tree = disk / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", disk / "home", mode=mode, workspace=tree)
    fs = ws.fs
    fs.pipe("/kept.txt", b"committed before the disk filled")
    with pytest.raises(OSError) as info:
        for i in range(100):
            fs.pipe(f"/fill/{i}.bin", os.urandom(256 * 1024))
    assert info.value.errno == errno.ENOSPC
    fill_up(disk)
    return ws


@pytest.mark.parametrize("mode", MODES)
def test_full_disk_commands_say_enospc_and_deleting_frees_room(small_disk: Path, mode: str) -> None:
    ws = full_workspace(small_disk, mode)
    ws.close()  # the last connection: SQLite removes the -wal and -shm files
    home = str(small_disk / "home")

    listed = run_vfs("--home", home, "ls", "alice:/")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["fill/", "kept.txt"]
    local = small_disk.parent / "local.bin"  # on another disk
    local.write_bytes(os.urandom(256 * 1024))
    put = run_vfs("--home", home, "put", str(local), "alice:/more.bin")
    if put.returncode:  # the released reserve may have left room enough
        assert "No space left on device" in put.stderr, put.stderr
        assert len(put.stderr.splitlines()) == 1

    removed = run_vfs("--home", home, "rm", "-r", "alice:/fill")
    assert removed.returncode == 0, removed.stderr
    listed = run_vfs("--home", home, "ls", "alice:/")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["kept.txt"] + (["more.bin"] if put.returncode == 0 else [])
    with Workspace.open("alice", home) as again:
        assert again.fs.cat("/kept.txt") == b"committed before the disk filled"
        again.fs.pipe("/after.txt", b"room again")
        assert again.fs.cat("/after.txt") == b"room again"
        assert again.db.integrity_check() == []


@pytest.mark.parametrize("mode", MODES)
def test_full_disk_delete_through_the_api(small_disk: Path, mode: str) -> None:
    ws = full_workspace(small_disk, mode)
    ws.fs.rm("/fill", recursive=True)
    assert ws.fs.ls("/", detail=False) == ["/kept.txt"]
    assert ws.fs.cat("/kept.txt") == b"committed before the disk filled"
    assert ws.db.integrity_check() == []
    ws.fs.pipe("/after.txt", b"room again")  # the delete gave the room back
    assert ws.fs.cat("/after.txt") == b"room again"
    ws.close()


@pytest.mark.parametrize("mode", MODES)
def test_close_reports_a_lost_write_once_and_closes(small_disk: Path, mode: str) -> None:
    require_mode(mode)
    tree = small_disk / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", small_disk / "home", mode=mode, workspace=tree)
    ws.fs.pipe("/kept.txt", b"committed before the disk filled")
    parent, name = ws.backend.resolve_parent("/pending.bin")
    handle, _ = ws.backend.create(parent, name, 0o644)
    fill_up(small_disk)
    try:
        handle.write(0, os.urandom(2 << 20))  # buffered in sqlite and hybrid mode
    except OSError as exc:
        assert exc.errno == errno.ENOSPC  # disk mode writes through at once
    with pytest.raises(OSError) if mode != "disk" else contextlib.nullcontext() as info:
        ws.close()
    if info is not None:
        assert info.value.errno == errno.ENOSPC
    open_files = {c.filename for c in apsw.connections()}
    assert str(ws.record.db_path) not in open_files
    assert str(small_disk / "home" / "state.sqlite") not in open_files
    ws.close()  # closed already: nothing more to report
    (small_disk / "ballast").unlink()
    with Workspace.open("alice", small_disk / "home") as again:
        assert again.fs.cat("/kept.txt") == b"committed before the disk filled"
        assert again.db.integrity_check() == []
