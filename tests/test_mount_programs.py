"""Real programs inside the mount: git, tar, a Python venv, a SQLite database."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import test_mount_support
from test_mount_support import Mounted

module_mount = test_mount_support.module_mount

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def git(*args: str | Path, cwd: Path, home: Path) -> str:
    return run("git", *args, cwd=cwd, env={**GIT_ENV, "HOME": str(home)})


def make_tree(root: Path, files: int) -> None:
    """Directories of small files with varied sizes and modes, plus symlinks."""
    for i in range(files):
        path = root / f"d{i % 37:02d}" / f"sub{i % 5}" / f"file{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{i}\n".encode() * (i % 97))
        if i % 11 == 0:
            path.chmod(0o755)
    (root / "d00" / "link").symlink_to("sub0/file00000.txt")
    (root / "empty-dir").mkdir()


def tree_digest(root: Path) -> dict[str, tuple[str, int, str]]:
    """Relative path -> (kind, permission bits, content or link target digest)."""
    found: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", st.st_mode & 0o7777, "")
            else:
                found[rel] = (
                    "file",
                    st.st_mode & 0o7777,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
    return found


def test_git_init_add_commit_status_log_gc_and_clone(module_mount: Mounted, tmp_path: Path) -> None:
    repo = module_mount.root / f"repo-{tmp_path.name}"
    repo.mkdir()
    make_tree(repo, 150)
    git("init", "-q", "-b", "main", cwd=repo, home=tmp_path)
    git("add", "-A", cwd=repo, home=tmp_path)
    git("commit", "-q", "-m", "first", cwd=repo, home=tmp_path)
    (repo / "d01" / "sub1" / "file00001.txt").write_text("changed\n")
    (repo / "new.txt").write_text("new\n")
    status = git("status", "--porcelain", cwd=repo, home=tmp_path)
    assert status.splitlines() == [" M d01/sub1/file00001.txt", "?? new.txt"]
    git("commit", "-q", "-am", "second", cwd=repo, home=tmp_path)
    assert git("log", "--format=%s", cwd=repo, home=tmp_path).split() == ["second", "first"]
    git("gc", "-q", "--prune=now", cwd=repo, home=tmp_path)
    git("fsck", "--strict", cwd=repo, home=tmp_path)
    assert git("status", "--porcelain", cwd=repo, home=tmp_path).splitlines() == ["?? new.txt"]

    source = tmp_path / "source"
    source.mkdir()
    make_tree(source, 100)
    git("init", "-q", "-b", "main", cwd=source, home=tmp_path)
    git("add", "-A", cwd=source, home=tmp_path)
    git("commit", "-q", "-m", "source", cwd=source, home=tmp_path)
    clone = module_mount.root / f"clone-{tmp_path.name}"
    git("clone", "-q", "--no-hardlinks", source, clone, cwd=tmp_path, home=tmp_path)
    assert git("status", "--porcelain", cwd=clone, home=tmp_path) == ""
    git("fsck", "--strict", cwd=clone, home=tmp_path)
    source_files = {k: v for k, v in tree_digest(source).items() if not k.startswith(".git")}
    clone_files = {k: v for k, v in tree_digest(clone).items() if not k.startswith(".git")}
    source_files.pop("empty-dir")  # git does not track empty directories
    assert clone_files == source_files


def test_tar_extract_and_create_give_identical_trees(module_mount: Mounted, tmp_path: Path) -> None:
    original = tmp_path / "original"
    original.mkdir()
    make_tree(original, 2000)
    archive = tmp_path / "tree.tar"
    run("tar", "-cf", archive, "-C", original, ".", cwd=tmp_path)
    target = module_mount.root / f"tar-{tmp_path.name}"
    target.mkdir()
    run("tar", "-xpf", archive, "-C", target, cwd=tmp_path)
    assert tree_digest(target) == tree_digest(original)

    flags = ["--sort=name", "--format=gnu", "--numeric-owner", "--owner=0", "--group=0"]
    run("tar", *flags, "-cf", tmp_path / "local.tar", "-C", original, ".", cwd=tmp_path)
    run("tar", *flags, "-cf", tmp_path / "mount.tar", "-C", target, ".", cwd=tmp_path)
    with tarfile.open(tmp_path / "local.tar") as a, tarfile.open(tmp_path / "mount.tar") as b:
        assert [(m.name, m.mode, m.size, m.mtime, m.linkname) for m in a.getmembers()] == [
            (m.name, m.mode, m.size, m.mtime, m.linkname) for m in b.getmembers()
        ]
    assert (tmp_path / "local.tar").read_bytes() == (tmp_path / "mount.tar").read_bytes()


def test_python_venv_runs_a_script_inside_the_mount(module_mount: Mounted, tmp_path: Path) -> None:
    venv = module_mount.root / f"venv-{tmp_path.name}"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    package = venv / "lib" / "helper_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def answer():\n    return 42\n")
    script = venv / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            sys.path.insert(0, sys.argv[1])
            import helper_pkg
            print(sys.prefix == sys.argv[2], helper_pkg.answer())
            """
        )
    )
    out = run(venv / "bin" / "python", script, venv / "lib", venv, cwd=venv)
    assert out.split() == ["True", "42"]


WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=60)
for i in range(200):
    with db:
        db.execute("INSERT INTO t (who, n) VALUES (?, ?)", (sys.argv[2], i))
db.close()
"""


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_database_inside_the_mount_with_two_writers(
    module_mount: Mounted, tmp_path: Path, journal: str
) -> None:
    path = module_mount.root / f"app-{journal}-{tmp_path.name}.db"
    db = sqlite3.connect(path, timeout=60)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)")
    db.commit()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name]) for name in ("a", "b")
    ]
    for w in writers:
        assert w.wait(timeout=120) == 0
    assert db.execute("SELECT who, count(*) FROM t GROUP BY who ORDER BY who").fetchall() == [
        ("a", 200),
        ("b", 200),
    ]
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
