"""vfs export and vfs import: a workspace tree out to a directory or tar file and
back, byte for byte with modes, times and symlinks, in every mode."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.helpers import run_vfs
from vfs import Workspace

MODES = ["sqlite", "disk", "hybrid"]
TIME = 1_600_000_000_123_456_789


def tree_of(root: Path) -> dict[str, tuple]:
    """Every object under a host directory: kind, permission bits, mtime, content or target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what: object = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                what = None
            else:
                what = path.read_bytes()
            found[str(path.relative_to(root))] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, what,
            )  # fmt: skip
    return found


def make_source(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "empty.txt").write_bytes(b"")
    (root / "link").symlink_to("src/pkg/mod.py")
    for path in [root / "src" / "pkg" / "mod.py", root / "run.sh", root / "big.bin",
                 root / "empty.txt"]:  # fmt: skip
        os.utime(path, ns=(TIME, TIME))
    os.utime(root / "link", ns=(TIME, TIME), follow_symlinks=False)
    for directory in [root / "src" / "pkg", root / "src"]:
        os.utime(directory, ns=(TIME, TIME))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["dir", "tar", "tar.gz"])
def test_import_then_export_equals_the_tree_byte_for_byte(
    home: Path, tmp_path: Path, mode: str, form: str
) -> None:
    source = tmp_path / "source"
    make_source(source)
    kwargs = {"workspace": tmp_path / "lower"} if mode == "hybrid" else {}
    if mode == "hybrid":
        (tmp_path / "lower").mkdir()
    Workspace.create("alice", home, mode=mode, **kwargs).close()
    if form == "dir":
        carried = str(source)
    else:
        carried = str(tmp_path / f"in.{form}")
        with tarfile.open(carried, "w:gz" if form == "tar.gz" else "w") as tar:
            tar.add(source, arcname=".")
    imported = run_vfs("import", "alice", carried)
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / f"out.{form}" if form != "dir" else tmp_path / "out"
    exported = run_vfs("export", "alice", str(out))
    assert exported.returncode == 0, exported.stderr
    expected = tree_of(source)
    if form != "dir":
        with tarfile.open(out) as tar:
            assert tar.getmember("link").mtime == pytest.approx(TIME / 1e9, abs=1e-6)
            tar.extractall(tmp_path / "unpacked", filter="tar")
        out = tmp_path / "unpacked"
        # tarfile sets no symlink times when it extracts (checked in the archive
        # above); an archive's times are floats, good to the microsecond.
        expected = {k: (*v[:2], v[2] // 1000, v[3]) for k, v in expected.items() if k != "link"}
    got = tree_of(out)
    if form != "dir":
        got = {k: (*v[:2], v[2] // 1000, v[3]) for k, v in got.items() if k != "link"}
        assert os.readlink(out / "link") == "src/pkg/mod.py"
    assert got == expected


def test_import_keeps_newer_workspace_files_unless_told(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.md").write_text("old import")
    os.utime(source / "notes.md", ns=(TIME, TIME))
    with Workspace.create("alice", home, mode="sqlite") as ws:
        ws.fs.pipe("/notes.md", b"edited since")
    kept = run_vfs("import", "alice", str(source))
    assert kept.returncode == 0 and "kept notes.md" in kept.stdout
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/notes.md") == b"edited since"
    assert run_vfs("import", "alice", str(source), "--overwrite").returncode == 0
    with Workspace.open("alice", home) as ws:
        assert ws.fs.cat("/notes.md") == b"old import"


def test_a_tar_that_climbs_out_of_the_workspace_is_refused(home: Path, tmp_path: Path) -> None:
    Workspace.create("alice", home, mode="disk").close()
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tar.addfile(info, fileobj=__import__("io").BytesIO(b"evil"))
    result = run_vfs("import", "alice", str(evil))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("escaped.txt"))


def test_export_of_a_hybrid_workspace_is_the_merged_view(home: Path, tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "kept.txt").write_text("lower")
    (lower / "deleted.txt").write_text("lower")
    with Workspace.create("alice", home, mode="hybrid", workspace=lower) as ws:
        ws.fs.rm("/deleted.txt")
        ws.fs.pipe("/new.txt", b"upper")
    assert run_vfs("export", "alice", str(tmp_path / "out")).returncode == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["kept.txt", "new.txt"]
