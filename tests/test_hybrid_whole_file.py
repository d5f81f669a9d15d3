"""Whole-file writes (``pipe_file``) in hybrid mode: the one-transaction path the
upper layer decides alone gives the overlay, its diff, its commit and its
conflict checks exactly what the generic path (a temporary file published
over the name, with copy-up and whiteouts) gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import disk_tree, workspace_tree
from vfs import Workspace
from vfs.backends.hybrid import HybridBackend
from vfs.backends.hybrid.commit import commit
from vfs.backends.hybrid.diff import scan


def make_lower(root: Path) -> Path:
    root.mkdir()
    (root / "x").write_text("X-original")
    (root / "y").write_text("Y-original")
    (root / "d").mkdir()
    (root / "d" / "f1").write_text("f1-original")
    return root


def pipe(ws: Workspace, path: str, data: bytes, mode: str = "overwrite") -> None:
    ws.fs.pipe_file(path, data, mode=mode)


def through_a_file(ws: Workspace, path: str, data: bytes, mode: str = "overwrite") -> None:
    with ws.fs.open(path, "xb" if mode == "create" else "wb") as f:
        f.write(data)


Writer = Callable[..., None]
# Each scenario: steps before the write, the path written, and the write's mode.
SCENARIOS: dict[str, tuple[Callable[[Workspace, Path], None], str, str]] = {
    "new file in a new directory": (lambda ws, low: ws.fs.makedirs("/new"), "/new/a", "overwrite"),
    "new file beside lower files": (lambda ws, low: None, "/brand-new", "overwrite"),
    "new file in a copied-up lower directory": (
        lambda ws, low: ws.fs.pipe_file("/d/other", b"o"),
        "/d/new",
        "overwrite",
    ),
    "replacing a lower file": (lambda ws, low: None, "/x", "overwrite"),
    "replacing a lower file a second time": (
        lambda ws, low: ws.fs.pipe_file("/x", b"first"),
        "/x",
        "overwrite",
    ),
    "a name whose lower file was deleted": (lambda ws, low: ws.fs.rm("/y"), "/y", "overwrite"),
    "creating a name whose lower file was deleted": (
        lambda ws, low: ws.fs.rm("/y"),
        "/y",
        "create",
    ),
    "an upper file whose name appeared on disk since": (
        lambda ws, low: _upper_then_on_disk(ws, low, "later"),
        "/later",
        "overwrite",
    ),
    "a lower file edited in place": (
        lambda ws, low: _append(ws, "/d/f1"),
        "/d/f1",
        "overwrite",
    ),
    "a lower file moved to a new name": (
        lambda ws, low: ws.fs.mv("/d/f1", "/d/moved"),
        "/d/moved",
        "overwrite",
    ),
}


def _upper_then_on_disk(ws: Workspace, low: Path, name: str) -> None:
    """A new upper file, then a disk file of the same name under it."""
    ws.fs.pipe_file(f"/{name}", b"upper")
    (low / name).write_text("disk")


def _append(ws: Workspace, path: str) -> None:
    """Changes the file's content while it still reads its first bytes from below."""
    with ws.fs.open(path, "ab") as f:
        f.write(b"+more")


def run_scenario(
    make_workspace: Callable[..., Workspace], tmp_path: Path, scenario: str, write: Writer
) -> tuple[dict[str, bytes | None], list[dict[str, object]], list[object], dict[str, object]]:
    """What the overlay shows, its diff, the conflicts of a commit made after
    the disk file changed, and the disk tree after a forced commit."""
    prepare, path, mode = SCENARIOS[scenario]
    low = make_lower(tmp_path / f"tree-{write.__name__}")
    ws = make_workspace("hybrid", agent=f"a-{write.__name__}", workspace=low)
    backend = ws.files_backend
    assert isinstance(backend, HybridBackend)
    prepare(ws, low)
    write(ws, path, b"written", mode)
    shown = workspace_tree(ws)
    changes = [c.as_dict() for c in scan(backend).changes]
    # The disk file under the written name changes: commit must see the conflict.
    disk_file = low / path.strip("/")
    if disk_file.is_file():
        disk_file.write_text("changed on disk")
    conflicts = sorted(c.path for c in commit(backend).conflicts)
    commit(backend, force=True)
    return shown, changes, conflicts, disk_tree(low)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_pipe_file_leaves_what_a_written_file_leaves(
    make_workspace: Callable[..., Workspace], tmp_path: Path, scenario: str
) -> None:
    fast = run_scenario(make_workspace, tmp_path, scenario, pipe)
    generic = run_scenario(make_workspace, tmp_path, scenario, through_a_file)
    assert fast == generic
    shown, _changes, _conflicts, committed = fast
    assert shown[SCENARIOS[scenario][1].strip("/")] == b"written"
    assert committed[SCENARIOS[scenario][1].strip("/")] == b"written"


@pytest.mark.parametrize(
    ("scenario", "upper_alone"),
    [
        ("new file in a new directory", True),
        ("new file beside lower files", True),
        ("new file in a copied-up lower directory", True),
        ("replacing a lower file", False),
        ("replacing a lower file a second time", True),
        ("a name whose lower file was deleted", True),
        ("creating a name whose lower file was deleted", True),
        ("an upper file whose name appeared on disk since", False),
        ("a lower file edited in place", False),
        ("a lower file moved to a new name", False),
    ],
)
def test_the_one_transaction_path_is_taken_where_the_upper_layer_decides_alone(
    make_workspace: Callable[..., Workspace], tmp_path: Path, scenario: str, upper_alone: bool
) -> None:
    prepare, path, mode = SCENARIOS[scenario]
    low = make_lower(tmp_path / "tree")
    ws = make_workspace("hybrid", workspace=low)
    backend = ws.files_backend
    assert isinstance(backend, HybridBackend)
    prepare(ws, low)
    written = backend.write_plain(path, b"written", exclusive=mode == "create")
    assert (written is not None) == upper_alone
    if written is not None:
        assert ws.fs.cat_file(path) == b"written"
        assert ws.fs.info(path)["ino"] == written.ino
