"""Errors name the path the user gave, in one line, without a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require_mode, run_vfs
from tests.test_mount_support import requires_fuse
from vfs import Workspace
from vfs.state.registry import MODES


def one_line_error(result: object, expected: str) -> None:
    assert result.returncode == 1, result.stdout  # type: ignore[attr-defined]
    assert result.stderr.strip() == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_moving_a_missing_path_names_it(home: Path, tmp_path: Path, mode: str) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", home, mode=mode, workspace=tree)
    for source in ("/missing", "/missing/deeper"):
        with pytest.raises(FileNotFoundError) as info:
            ws.fs.mv(source, "/x")
        assert info.value.filename == source
        result = run_vfs("--home", str(home), "mv", f"alice:{source}", "alice:/x")
        one_line_error(result, f"Error: {source}: No such file or directory")
    assert ws.fs.ls("/", detail=False) == []
    ws.close()


@pytest.mark.parametrize("mode", ["disk", "hybrid"])
def test_reading_a_fifo_is_einval_naming_its_path(home: Path, tmp_path: Path, mode: str) -> None:
    """A FIFO in a disk tree is refused at once (never opened, which would
    block) and the error names the workspace path, not an inode."""
    require_mode(mode)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.mkfifo(tree / "sub" / "fifo")
    fs = Workspace.create("alice", home, mode=mode, workspace=tree).fs
    reads = {
        "cat": lambda: fs.cat("/sub/fifo"),
        "open": lambda: fs.open("/sub/fifo", "rb").read(),
        "range": lambda: fs.cat_file("/sub/fifo", start=0, end=1),
        "ukey": lambda: fs.ukey("/sub/fifo"),
        "append": lambda: fs.open("/sub/fifo", "ab"),
    }
    for what, read in reads.items():
        with pytest.raises(OSError) as info:
            read()
        assert (info.value.errno, info.value.filename) == (errno.EINVAL, "/sub/fifo"), what
    result = run_vfs("--home", str(home), "cat", "alice:/sub/fifo", timeout=30)
    one_line_error(result, "Error: /sub/fifo: not a regular file")


@pytest.mark.parametrize("mode", MODES)
def test_failed_append_open_leaves_no_traceback(home: Path, tmp_path: Path, mode: str) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    Workspace.create("alice", home, mode=mode, workspace=tree).close()
    code = (
        "import gc\n"
        "from vfs import Workspace\n"
        f"fs = Workspace.open('alice', {str(home)!r}).fs\n"
        "fs.pipe('/file', b'x')\n"
        "fs.mkdir('/dir')\n"
        "for path in ('/file/below', '/dir'):\n"
        "    try:\n"
        "        fs.open(path, 'ab')\n"
        "    except OSError as exc:\n"
        "        print(exc.errno, exc.filename)\n"
        "gc.collect()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [
        f"{errno.ENOTDIR} /file/below",
        f"{errno.EISDIR} /dir",
    ]
    assert result.stderr == ""


@pytest.mark.parametrize("mode", MODES)
def test_recursive_get_copies_symlinks_as_symlinks(home: Path, tmp_path: Path, mode: str) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    fs = Workspace.create("alice", home, mode=mode, workspace=tree).fs
    fs.pipe("/src/a/inner.txt", b"inner")
    fs.pipe("/src/b.txt", b"b")
    fs.pipe("/src/z/last.txt", b"after the links")
    fs.symlink("a", "/src/dir-link")
    fs.symlink("b.txt", "/src/file-link")
    fs.symlink("../../outside", "/src/escaping-link")

    def check(local: Path) -> None:
        assert (local / "a" / "inner.txt").read_bytes() == b"inner"
        assert (local / "z" / "last.txt").read_bytes() == b"after the links"
        assert os.readlink(local / "dir-link") == "a"
        assert os.readlink(local / "file-link") == "b.txt"
        assert os.readlink(local / "escaping-link") == "../../outside"
        assert (local / "dir-link" / "inner.txt").read_bytes() == b"inner"

    fs.get("/src", str(tmp_path / "by-api"), recursive=True)
    check(tmp_path / "by-api")
    result = run_vfs("--home", str(home), "get", "-r", "alice:/src", str(tmp_path / "by-cli"))
    assert result.returncode == 0, result.stderr
    check(tmp_path / "by-cli")
    # Without -r a link to a file is followed, as cp does.
    fs.get("/src/file-link", str(tmp_path / "followed"))
    assert not os.path.islink(tmp_path / "followed")
    assert (tmp_path / "followed").read_bytes() == b"b"


@requires_fuse
@pytest.mark.parametrize("mode", MODES)
def test_mount_error_about_the_database_names_the_database(
    home: Path, tmp_path: Path, mode: str
) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    ws = Workspace.create("alice", home, mode=mode, workspace=tree)
    db_path = ws.record.db_path
    ws.close()
    db_path.write_bytes(b"")
    where = tmp_path / "mnt"
    where.mkdir()
    result = run_vfs("--home", str(home), "mount", "alice", str(where))
    one_line_error(result, f"Error: {db_path}: database file is empty")
    assert not os.path.ismount(where)
    assert db_path.read_bytes() == b""
