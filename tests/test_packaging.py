"""The distribution installs one import package, ``vfs``, and nothing else at
the top level, so other distributions' generic names cannot shadow its parts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the tree, links kept: setuptools' build/ directory of a previous
    # build would otherwise carry modules that no longer exist into the wheel.
    source = tmp_path_factory.mktemp("source") / "agentvfs"
    shutil.copytree(
        REPO, source, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )  # fmt: skip
    # setuptools of this interpreter builds it: no index is reached.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("agentvfs-*.whl")
    return found


def test_the_wheel_installs_vfs_alone_at_the_top_level(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["vfs"]
    outside = [n for n in names if not n.startswith(("vfs/", "agentvfs-"))]
    assert outside == []
    for expected in (
        "vfs/backends/sqlite/backend.py",
        "vfs/backends/hybrid/commit.py",
        "vfs/mount/operations.py",
        "vfs/schema/agent/0001_files.sql",
        "vfs/schema/state/0001_registry.sql",
        "vfs/py.typed",
    ):
        assert expected in names


def test_generic_top_level_names_of_other_distributions_do_not_shadow_vfs(
    tmp_path: Path, home: Path
) -> None:
    # Packages named like the repository's folders, first on the path, as
    # `pip install schema mount` would put them.
    for name in ("schema", "mount", "backends"):
        (tmp_path / "other" / name).mkdir(parents=True)
        (tmp_path / "other" / name / "__init__.py").write_text("FOREIGN = True\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import schema, mount, backends\n"
        "assert schema.FOREIGN and mount.FOREIGN and backends.FOREIGN\n"
        "import fsspec\n"
        "from vfs import Workspace\n"
        "from vfs.mount import mounted\n"
        "Workspace.create('alice', mode='sqlite').close()\n"
        "with fsspec.open('agentvfs://alice/notes.md', 'wb') as f:\n"
        "    f.write(b'kept')\n"
        "print(fsspec.open('agentvfs://alice/notes.md').open().read().decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "other")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kept"
