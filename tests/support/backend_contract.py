"""What the backend contract suite shares: the ``given`` fixture, the engine bugs
it knows of, and small helpers.

``given(tree)`` is a backend in one of four workspaces holding ``tree``: sqlite,
disk, hybrid with the tree written through the overlay (so it lives in the
database, beside a lower tree of one file the tests leave alone), and hybrid
with the tree as the disk lower layer (so every operation starts from a lower
file or directory).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vfs import Workspace
from vfs.backends.base import Backend

# Linux's renameat2(2) flags, which the interface takes as they are.
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
LONG_NAME = "n" * 256  # one byte over NAME_MAX
#: the one lower file of the "hybrid" workspace; :func:`ls` leaves it out
UNTOUCHED = "untouched-lower-file"


@dataclass(frozen=True)
class Special:
    """A FIFO, socket or device in a starting tree: its ``st_mode`` and ``st_rdev``."""

    mode: int
    rdev: int = 0


#: a starting tree: path -> file content, None for a directory, or a Special (parents first)
Tree = dict[str, bytes | Special | None]
Given = Callable[..., Backend]

_LOWER_DIR_NLINK = (
    "hybrid: a directory's nlink in the upper layer (the root always is) does not"
    " count its lower subdirectories, and rmdir of a lower subdirectory does not"
    " lower its parent's count"
)
#: engine bugs these tests found: (test, mode) -> what is wrong
KNOWN_BUGS = {
    ("test_the_root_counts_its_subdirectories", "hybrid-lower"): _LOWER_DIR_NLINK,
    ("test_a_directory_counts_itself_its_parent_entry_and_its_subdirectories", "hybrid-lower"): (
        _LOWER_DIR_NLINK
    ),
}


def _write_host(root: Path, tree: Tree) -> None:
    for path, data in tree.items():
        if data is None:
            (root / path).mkdir()
        elif isinstance(data, Special):
            os.mknod(root / path, data.mode, data.rdev)
            os.chmod(root / path, data.mode & 0o7777)  # past the umask
        else:
            (root / path).write_bytes(data)


def _write_through(backend: Backend, tree: Tree) -> None:
    for path, data in tree.items():
        parent, name = backend.resolve_parent(path)
        if data is None:
            backend.mkdir(parent, name, 0o755)
        elif isinstance(data, Special):
            backend.mknod(parent, name, data.mode, data.rdev)
        else:
            handle, _attr = backend.create(parent, name, 0o644)
            with handle:
                handle.write(0, data)


@pytest.fixture(params=["sqlite", "disk", "hybrid", "hybrid-lower"])
def given(request: pytest.FixtureRequest, home: Path, tmp_path: Path) -> Iterator[Given]:
    """``given(tree, read_only=False)``: the mode's backend, holding ``tree``."""
    mode = request.param
    bug = KNOWN_BUGS.get((request.node.originalname, mode))
    if bug is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    opened: list[Workspace] = []

    def make(tree: Tree | None = None, *, read_only: bool = False) -> Backend:
        tree = tree or {}
        lower = tmp_path / "tree"
        lower.mkdir()
        if mode == "hybrid-lower":
            _write_host(lower, tree)
            opened.append(Workspace.create("alice", home, mode="hybrid", workspace=lower))
        else:
            if mode == "hybrid":
                (lower / UNTOUCHED).write_bytes(b"from the disk")
            where = lower if mode != "sqlite" else None
            opened.append(Workspace.create("alice", home, mode=mode, workspace=where))
            _write_through(opened[-1].files_backend, tree)
        if read_only:
            opened.pop().close()
            opened.append(Workspace.open("alice", home, read_only=True))
        return opened[-1].files_backend

    yield make
    for ws in opened:
        if mode == "hybrid" and not ws.read_only:
            assert ws.files_backend.read_file(UNTOUCHED) == b"from the disk"
        ws.close()


def fails(code: int, call: Callable[[], object]) -> OSError:
    with pytest.raises(OSError) as caught:
        call()
    assert caught.value.errno == code, (
        f"{errno.errorcode.get(caught.value.errno or 0)}: {caught.value}"
    )
    return caught.value


def ino(backend: Backend, path: str) -> int:
    return backend.resolve(path).ino


def ls(backend: Backend, path: str = "") -> list[str]:
    entries = backend.readdir(ino(backend, path))
    return sorted(name for name, _attr, _offset in entries if name != UNTOUCHED)


def cat(backend: Backend, path: str) -> bytes:
    return backend.read_file(path)
