"""Content damaged on disk is an EIO naming the file, never wrong bytes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from tests.helpers import require_mode
from tests.test_mount_support import fresh_mount, mount_agent, requires_fuse
from vfs import Workspace
from vfs.backends.chunks import DEFAULT_CHUNK_SIZE
from vfs.cli import main

# Disk mode keeps file bytes in host files, which have no stored hash to check.
CHUNKED_MODES = ("sqlite", "hybrid")
BIG = os.urandom(3 * DEFAULT_CHUNK_SIZE)


def rot_chunk(db_path: Path, content: bytes) -> None:
    """Flip bytes inside the stored chunk whose content starts like ``content``,
    the way a bad sector or a stray write would, keeping the length."""
    conn = apsw.Connection(str(db_path))
    try:
        (chunk_id, data) = next(
            conn.execute(
                "SELECT id, data FROM chunks WHERE substr(data, 1, 16) = ?", (content[:16],)
            )
        )
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0xFF
        conn.execute("UPDATE chunks SET data = ? WHERE id = ?", (bytes(damaged), chunk_id))
    finally:
        conn.close()


def seeded(home: Path, tmp_path: Path, mode: str) -> Workspace:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", home, mode=mode, workspace=tree)
    ws.fs.pipe("/docs/big.bin", BIG)
    ws.fs.pipe("/docs/small.txt", b"a small file in one chunk")
    ws.fs.pipe("/docs/intact.txt", b"nothing wrong with this one")
    return ws


def assert_eio_naming(info: pytest.ExceptionInfo[OSError], path: str) -> None:
    assert info.value.errno == errno.EIO
    assert info.value.filename == path
    assert "corrupt" in str(info.value)


@pytest.mark.parametrize("mode", CHUNKED_MODES)
def test_damaged_chunk_reads_fail_with_eio_naming_the_file(
    home: Path, tmp_path: Path, mode: str
) -> None:
    ws = seeded(home, tmp_path, mode)
    rot_chunk(ws.record.db_path, BIG[DEFAULT_CHUNK_SIZE:])
    rot_chunk(ws.record.db_path, b"a small file in one chunk")
    fs = ws.fs
    for path in ("/docs/big.bin", "/docs/small.txt"):
        with pytest.raises(OSError) as info:
            fs.cat(path)
        assert_eio_naming(info, path)
        with pytest.raises(OSError) as info, fs.open(path, "rb") as f:
            f.read()
        assert_eio_naming(info, path)
    with pytest.raises(OSError) as info:
        fs.cat_file("/docs/big.bin", start=DEFAULT_CHUNK_SIZE + 10, end=DEFAULT_CHUNK_SIZE + 20)
    assert_eio_naming(info, "/docs/big.bin")
    # The undamaged chunks and files still read.
    assert fs.cat_file("/docs/big.bin", end=DEFAULT_CHUNK_SIZE) == BIG[:DEFAULT_CHUNK_SIZE]
    assert fs.cat("/docs/intact.txt") == b"nothing wrong with this one"
    ws.close()

    for path in ("/docs/big.bin", "/docs/small.txt"):
        result = CliRunner().invoke(main, ["--home", str(home), "cat", f"alice:{path}"])
        assert result.exit_code == 1
        assert result.output.splitlines()[-1].startswith(
            f"Error: {path}: stored content is corrupt"
        )
        assert "Traceback" not in result.output


@requires_fuse
@pytest.mark.parametrize("mode", CHUNKED_MODES)
def test_damaged_chunk_is_eio_through_the_mount(tmp_path: Path, mode: str) -> None:
    with fresh_mount(tmp_path, mode) as mounted:
        (mounted.root / "big.bin").write_bytes(BIG)
        (mounted.root / "intact.txt").write_bytes(b"still fine")
    rot_chunk(mounted.home / "agents" / "alice" / "agent.sqlite", BIG[DEFAULT_CHUNK_SIZE:])
    # A new mount, so that no page cache holds the bytes from before the damage.
    with mount_agent(mounted.home, mounted.root, mode=mode) as again:
        with pytest.raises(OSError) as info:
            (again.root / "big.bin").read_bytes()
        assert info.value.errno == errno.EIO
        assert (again.root / "intact.txt").read_bytes() == b"still fine"
