"""Random operation sequences: the overlay behaves like a real directory, and commit makes
the disk equal to what the overlay showed."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import disk_tree, workspace_tree
from vfs import Workspace
from vfs.backends.hybrid.commit import commit
from vfs.backends.hybrid.diff import scan

NAMES = ["a", "b", "c"]
AGENT_NUMBERS = itertools.count()
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
operations = st.one_of(
    st.tuples(st.just("write"), paths, st.binary(max_size=300)),
    st.tuples(st.just("append"), paths, st.binary(min_size=1, max_size=50)),
    st.tuples(st.just("truncate"), paths, st.integers(0, 200)),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("rmtree"), paths),
    st.tuples(st.just("rename"), paths, paths),
)


def seed_tree(root: Path) -> None:
    for rel, data in {"a/a": b"lower a/a", "a/b/c": b"x" * 70_000, "b": b"lower b"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "c").mkdir()


def apply_to_disk(root: Path, op: tuple) -> None:
    kind, path = op[0], root / op[1]
    if kind == "write":
        path.write_bytes(op[2])
    elif kind == "append":
        with open(path, "r+b") as stream:
            stream.seek(0, os.SEEK_END)
            stream.write(op[2])
    elif kind == "truncate":
        os.truncate(path, op[2])
    elif kind == "mkdir":
        path.mkdir()
    elif kind == "unlink":
        path.unlink()
    elif kind == "rmtree":
        if not path.is_dir():
            path.lstat()  # FileNotFoundError when missing
            raise NotADirectoryError(path)
        shutil.rmtree(path)
    elif kind == "rename":
        os.rename(path, root / op[2])


def apply_to_overlay(ws: Workspace, op: tuple) -> None:
    backend, kind, path = ws.files_backend, op[0], op[1]
    if kind == "write":
        parent, name = backend.resolve_parent(path)
        backend.write_file(parent, name, op[2])
    elif kind in ("append", "truncate"):
        attr = backend.resolve(path)
        with backend.open(attr.ino, os.O_WRONLY) as handle:
            if kind == "append":
                handle.write(handle.getattr().size, op[2])
            else:
                handle.truncate(op[2])
    elif kind == "mkdir":
        parent, name = backend.resolve_parent(path)
        backend.mkdir(parent, name, 0o755)
    elif kind == "unlink":
        parent, name = backend.resolve_parent(path)
        backend.unlink(parent, name)
    elif kind == "rmtree":
        if not backend.resolve(path).is_dir:
            raise NotADirectoryError(path)
        ws.fs.rm(path, recursive=True)
    elif kind == "rename":
        parent, name = backend.resolve_parent(path)
        new_parent, new_name = backend.resolve_parent(op[2])
        backend.rename(parent, name, new_parent, new_name)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operations, max_size=12))
def test_the_overlay_matches_a_real_directory_and_commit_reproduces_it(home, ops):
    with tempfile.TemporaryDirectory() as temp:
        reference, lower = Path(temp, "reference"), Path(temp, "lower")
        seed_tree(reference)
        seed_tree(lower)
        agent = f"model{next(AGENT_NUMBERS)}"
        with Workspace.create(agent, home, mode="hybrid", workspace=lower) as ws:
            untouched = disk_tree(lower)
            for op in ops:
                try:
                    apply_to_disk(reference, op)
                except OSError as exc:
                    # Both refuse; which errno wins when several apply is the mount tests' job.
                    try:
                        apply_to_overlay(ws, op)
                    except OSError:
                        pass
                    else:
                        raise AssertionError(f"{op} succeeded in the overlay: {exc}") from None
                    continue
                apply_to_overlay(ws, op)
                assert workspace_tree(ws) == disk_tree(reference), op
            assert disk_tree(lower) == untouched
            report = commit(ws.files_backend)
            assert report.conflicts == []
            assert disk_tree(lower) == disk_tree(reference)
            assert scan(ws.files_backend).changes == []
            assert workspace_tree(ws) == disk_tree(reference)
