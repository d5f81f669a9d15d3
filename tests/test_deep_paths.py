"""Objects whose path from the workspace root is longer than ``PATH_MAX``.

A local directory serves a file 4,095 bytes below a subdirectory (each lookup is
relative to the directory before it), so the path from the root passes 4,096
bytes. The disk engine and hybrid mode's disk tree must serve it too, by inode
and through a FUSE mount, errno for errno like a local directory. (A whole
path of PATH_MAX bytes is refused, as the host refuses it.)
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_mount_posix import Log, seq_path_max
from test_mount_support import FUSE_MISSING, fresh_mount

import vfs.backends.host
from vfs import Workspace
from vfs.backends.base import ROOT_INO, Backend
from vfs.backends.disk.backend import DiskBackend
from vfs.backends.host import mount_table, open_beneath, renameat2
from vfs.backends.hybrid.backend import HybridBackend
from vfs.backends.hybrid.commit import commit
from vfs.backends.renames import RENAME_EXCHANGE

#: 15 directories and a file name of 255 bytes: 4,095 bytes (PATH_MAX - 1), the
#: longest path the kernel takes, relative to the directory that holds the chain.
DIRS = [f"{i:02d}" + "d" * 253 for i in range(15)]
FILE = "f" * 255
DEEP = "/".join([*DIRS, FILE])
assert len(DEEP) == 4095


def make_chain(top: Path | int) -> int:
    """Create :data:`DIRS` under ``top`` (a path or a directory descriptor, left
    open) one ``mkdirat`` at a time; a descriptor of the deepest."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY) if isinstance(top, Path) else os.dup(top)
    for name in DIRS:
        os.mkdir(name, 0o755, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    return fd


def write_deep_file(top: Path, data: bytes) -> None:
    """:func:`make_chain` under ``top``, then :data:`FILE` at its bottom holding ``data``."""
    fd = make_chain(top)
    try:
        with open(os.open(FILE, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(data)
    finally:
        os.close(fd)


# -- the engines, by inode ------------------------------------------------------------


def deep_steps(backend: Backend, top: int) -> list[object]:
    """Every kind of operation on objects in the chain under ``top``; what each gave."""
    seen: list[object] = []
    parent = top
    for name in DIRS:
        parent = backend.mkdir(parent, name, 0o755).ino
    handle, attr = backend.create(parent, FILE, 0o644)
    with handle:
        handle.write(0, b"deep data")
    seen.append(backend.lookup(parent, FILE).size)
    seen.append(backend.read(attr.ino, 0, 100))
    seen.append(stat.S_IMODE(backend.setattr(attr.ino, mode=0o600).mode))
    with backend.open(attr.ino, os.O_RDWR) as handle:
        handle.write(9, b"!")
    seen.append(backend.read(attr.ino, 0, 100))
    backend.setxattr(attr.ino, b"user.deep", b"yes")
    seen.append(backend.getxattr(attr.ino, b"user.deep"))
    backend.symlink(parent, "link", FILE.encode())
    seen.append(backend.readlink(backend.lookup(parent, "link").ino))
    backend.mknod(parent, "fifo", stat.S_IFIFO | 0o644, 0)
    backend.rename(parent, FILE, parent, "moved")
    seen.append(sorted(name for name, _attr, _offset in backend.readdir(parent)))
    backend.unlink(parent, "moved")
    backend.unlink(parent, "link")
    backend.unlink(parent, "fifo")
    seen.append(sorted(name for name, _attr, _offset in backend.readdir(parent)))
    return seen


EXPECTED = [
    9,
    b"deep data",
    0o600,
    b"deep data!",
    b"yes",
    FILE.encode(),
    ["fifo", "link", "moved"],
    [],
]


@pytest.mark.parametrize("mode", ["disk", "hybrid", "sqlite"])
def test_every_operation_works_below_a_path_longer_than_path_max(
    make_workspace: Callable[..., Workspace], tmp_path: Path, mode: str
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    ws = make_workspace(mode) if mode == "sqlite" else make_workspace(mode, workspace=tree)
    backend = ws.files_backend
    top = backend.mkdir(ROOT_INO, "sub", 0o755).ino
    assert deep_steps(backend, top) == EXPECTED


def walk(backend: Backend, names: list[str]) -> int:
    """The inode at ``names`` below the root, one lookup at a time."""
    ino = ROOT_INO
    for name in names:
        ino = backend.lookup(ino, name).ino
    return ino


def test_disk_inodes_learned_by_long_paths_reopen_after_a_restart(tmp_path: Path) -> None:
    """A fresh engine knows no descriptor: it reaches each inode by its path."""
    (tmp_path / "sub").mkdir()
    write_deep_file(tmp_path / "sub", b"on the host")
    backend = DiskBackend(tmp_path)
    try:
        parent = walk(backend, ["sub", *DIRS])
        ino = backend.lookup(parent, FILE).ino
        assert backend.read(ino, 0, 100) == b"on the host"
        assert stat.S_IMODE(backend.setattr(ino, mode=0o640).mode) == 0o640
        assert [name for name, _a, _o in backend.readdir(parent)] == [FILE]
        backend.rename(parent, FILE, ROOT_INO, "shallow")
        assert (tmp_path / "shallow").read_bytes() == b"on the host"
    finally:
        backend.close()


def test_hybrid_lower_files_below_path_max_read_copy_up_and_commit(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    write_deep_file(tree / "sub", b"lower")
    backend = make_workspace("hybrid", workspace=tree).files_backend
    assert isinstance(backend, HybridBackend)
    parent = walk(backend, ["sub", *DIRS])
    assert [name for name, _a, _o in backend.readdir(parent)] == [FILE]
    ino = backend.lookup(parent, FILE).ino
    assert backend.read(ino, 0, 100) == b"lower"
    with backend.open(ino, os.O_RDWR) as handle:
        handle.write(5, b" changed")
    assert commit(backend).conflicts == []
    fd = os.open(tree / "sub", os.O_PATH | os.O_DIRECTORY)
    try:
        with open(open_beneath(fd, DEEP, os.O_RDONLY), "rb") as f:
            assert f.read() == b"lower changed"
    finally:
        os.close(fd)


# -- pieces stay beneath the root ----------------------------------------------------


@pytest.fixture
def long_root(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A root holding :data:`DIRS` twice over (7,679 bytes of directories): its
    descriptor and the deepest directory's."""
    root = tmp_path / "root"
    root.mkdir()
    half = make_chain(root)
    deepest = make_chain(half)
    os.close(half)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd, deepest
    os.close(fd)
    os.close(deepest)


CHAIN = "/".join(DIRS + DIRS)


def read_beneath(root_fd: int, path: str, inner_symlinks: bool = False) -> str:
    fd = open_beneath(root_fd, path, os.O_RDONLY, inner_symlinks=inner_symlinks)
    with open(fd) as f:
        return f.read()


def test_long_paths_refuse_dotdot_and_escaping_symlinks(
    long_root: tuple[int, int], tmp_path: Path
) -> None:
    root, deepest = long_root
    (tmp_path / "secret").write_text("outside")
    with pytest.raises(OSError) as caught:
        open_beneath(root, f"{CHAIN}/../{DIRS[-1]}/x", os.O_RDONLY)
    assert caught.value.errno == errno.EXDEV
    os.symlink(str(tmp_path), "abs", dir_fd=deepest)
    os.symlink("../" * 31, "up", dir_fd=deepest)  # from 30 levels down: the root's parent
    os.stat("up/secret", dir_fd=deepest)  # the host follows it out
    for link in ("abs", "up"):
        for inner in (False, True):
            with pytest.raises(OSError) as caught:
                read_beneath(root, f"{CHAIN}/{link}/secret", inner)
            assert caught.value.errno in (errno.EXDEV, errno.ELOOP)
    os.symlink(".", "here", dir_fd=deepest)
    with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=deepest), "w") as f:
        f.write("inside")
    assert read_beneath(root, f"{CHAIN}/here/file", inner_symlinks=True) == "inside"
    with pytest.raises(OSError) as caught:
        read_beneath(root, f"{CHAIN}/here/file")
    assert caught.value.errno == errno.ELOOP
    assert read_beneath(root, f"{CHAIN}/file") == "inside"


def test_long_paths_without_openat2_take_the_walk(
    long_root: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, deepest = long_root
    monkeypatch.setattr(vfs.backends.host, "openat2_available", False)
    with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=deepest), "w") as f:
        f.write("inside")
    assert read_beneath(root, f"{CHAIN}/file") == "inside"


# -- through a FUSE mount ------------------------------------------------------------


@pytest.mark.skipif(FUSE_MISSING, reason="FUSE (/dev/fuse, fusermount3) is absent")
@pytest.mark.parametrize("mode", ["disk", "hybrid", "sqlite"])
def test_path_max_below_a_fuse_mount_subdirectory_matches_a_local_directory(
    tmp_path: Path, mode: str
) -> None:
    """The mount serves each object by inode; disk mode must not turn it back into a
    whole path the host refuses. (The same steps run in every kind of mount in
    test_mount_posix; this one asks for FUSE in every mode.)"""
    local = tmp_path / "local"
    local.mkdir()
    expected, got = Log(), Log()
    seq_path_max(local, expected)
    with fresh_mount(tmp_path / "m", mode, fuse=True) as mounted:
        assert mount_table()[mounted.root].startswith("fuse")
        top = mounted.root / "sub"
        top.mkdir()
        seq_path_max(top, got)
    assert got.entries == expected.entries


def test_disk_checkpoint_and_rollback_reach_files_below_path_max(
    make_workspace: Callable[..., Workspace],
) -> None:
    """A checkpoint walks the host tree and a rollback writes it back, both from
    directory descriptors: a file deeper than PATH_MAX is saved and restored."""
    ws = make_workspace("disk")
    backend = ws.files_backend
    parent = backend.mkdir(ROOT_INO, "sub", 0o755).ino
    for name in DIRS:
        parent = backend.mkdir(parent, name, 0o755).ino
    backend.write_file(parent, FILE, b"saved")
    backend.symlink(parent, "link", b"target")
    ws.checkpoints.create("c")
    backend.write_file(parent, FILE, b"changed after")
    backend.unlink(parent, "link")
    backend.write_file(parent, "stray", b"x")
    ws.checkpoints.restore("c")
    parent = walk(backend, ["sub", *DIRS])
    assert sorted(n for n, _a, _o in backend.readdir(parent)) == sorted([FILE, "link"])
    assert backend.read(backend.lookup(parent, FILE).ino, 0, 100) == b"saved"
    assert backend.readlink(backend.lookup(parent, "link").ino) == b"target"
    assert ws.checkpoints.diff("c") == []


def _tree_below(dir_fd: int, names: list[str], content: str) -> None:
    """``names`` as nested directories under ``dir_fd``, a file ``file`` at the bottom."""
    fd = os.dup(dir_fd)
    try:
        for name in names:
            os.mkdir(name, 0o755, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write(content)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", [14, 15, 16], ids=["before-boundary", "at-boundary", "after"])
def test_long_paths_never_follow_a_directory_swapped_for_an_escaping_symlink(
    tmp_path: Path, where: int
) -> None:
    """Another thread swaps a directory of the path (before, at and after the
    first run's end) with a symlink out of the root, again and again: every open
    reads the file inside or fails, never the one outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    names = DIRS + [f"{i:02d}" + "e" * 253 for i in range(3)]
    rest = names[where + 1 :]
    out_fd = os.open(outside, os.O_RDONLY | os.O_DIRECTORY)
    _tree_below(out_fd, rest, "outside")
    os.close(out_fd)
    parent_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    _tree_below(parent_fd, names[:where], "")
    for name in names[:where]:
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)
        os.close(parent_fd)
        parent_fd = inner
    os.mkdir(names[where], 0o755, dir_fd=parent_fd)
    swapped = os.open(names[where], os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)
    _tree_below(swapped, rest, "inside")
    os.close(swapped)
    os.symlink(str(outside), "alt", dir_fd=parent_fd)
    path = "/".join([*names, "file"])
    assert len(path) >= 4096
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            renameat2(parent_fd, names[where], parent_fd, "alt", RENAME_EXCHANGE)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for inner in (False, True):
                try:
                    seen.add(read_beneath(root_fd, path, inner))
                except OSError as exc:
                    assert exc.errno in (errno.EXDEV, errno.ELOOP, errno.ENOENT, errno.ENOTDIR)
    finally:
        stop.set()
        swapper.join()
        os.close(root_fd)
        os.close(parent_fd)
    assert "outside" not in seen
    assert "inside" in seen
