"""The agentvfs demo: one agent per workspace mode, used three ways.

For each of sqlite, disk and hybrid it creates an agent, writes and reads files
through ``agentvfs://`` URLs, lists them with the ``vfs`` CLI, mounts the
workspace with FUSE and works in it with ordinary programs (Python file I/O
and git), then reads the result back through fsspec. The hybrid agent works
on a copy-on-write view of a project directory that stays untouched until
``vfs commit``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fsspec

VFS = [str(Path(sys.executable).with_name("vfs"))]


def step(text: str) -> None:
    print(f"\n== {text}")


def vfs(*args: str, home: Path) -> str:
    result = subprocess.run(
        [*VFS, "--home", str(home), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def can_mount() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def use_mount(agent: str, home: Path, root: Path, *, git: bool) -> None:
    mountpoint = root / f"mnt-{agent}"
    mountpoint.mkdir()
    print(vfs("mount", agent, str(mountpoint), home=home).strip())
    try:
        (mountpoint / "from-the-mount.txt").write_text(f"written by a program in {agent}'s mount\n")
        listing = sorted(p.name for p in mountpoint.iterdir())
        print(f"ls {mountpoint}: {listing}")
        if not git and (mountpoint / "src" / "app.py").exists():
            with open(mountpoint / "src" / "app.py", "a") as f:
                f.write("print('edited inside the mount')\n")
            print("appended a line to src/app.py inside the mount")
        if git and shutil.which("git"):
            env = {
                **os.environ,
                "GIT_AUTHOR_NAME": "demo",
                "GIT_AUTHOR_EMAIL": "demo@example.com",
                "GIT_COMMITTER_NAME": "demo",
                "GIT_COMMITTER_EMAIL": "demo@example.com",
            }
            for command in (
                ["git", "init", "-q"],
                ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "work inside the mount"],
            ):
                subprocess.run(command, cwd=mountpoint, env=env, check=True)
            log = subprocess.run(
                ["git", "log", "--oneline"],
                cwd=mountpoint,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            print(f"git log in the mount: {log}")
    finally:
        vfs("umount", str(mountpoint), home=home)
    text = fsspec.open(f"agentvfs://{agent}/from-the-mount.txt", "r", home=str(home)).open().read()
    print(f"read back through fsspec after umount: {text.strip()!r}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="agentvfs-demo-"))
    home = root / "home"
    project = root / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hello from the project')\n")
    (project / "README.md").write_text("# a project on disk\n")
    print(f"demo state in {root}")

    agents = {"alice": ("sqlite", None), "bob": ("disk", None), "carol": ("hybrid", project)}
    for agent, (mode, workspace) in agents.items():
        step(f"{agent}: {mode} mode")
        args = ["init", agent, "--mode", mode]
        if workspace is not None:
            args += ["--workspace", str(workspace)]
        print(vfs(*args, home=home).strip())

        url = f"agentvfs://{agent}/notes/todo.md"
        with fsspec.open(url, "w", home=str(home)) as f:
            f.write(f"- [ ] things for {agent}\n")
        with fsspec.open(url, "r", home=str(home)) as f:
            print(f"fsspec read {url}: {f.read().strip()!r}")
        fs = fsspec.filesystem("agentvfs", agent=agent, home=str(home))
        fs.pipe({f"/data/{i}.json": f'{{"n": {i}}}'.encode() for i in range(3)})
        print(f"fs.find('/'): {fs.find('/')}")
        print("vfs tree:\n" + vfs("tree", f"{agent}:/", home=home).rstrip())
        print(f"vfs cat {agent}:/data/1.json -> {vfs('cat', f'{agent}:/data/1.json', home=home)}")

        if can_mount():
            use_mount(agent, home, root, git=mode != "hybrid")
        else:
            print("(no /dev/fuse or fusermount3 here: the FUSE part is skipped)")

    step("carol's overlay: the project directory is untouched until commit")
    print(
        f"files on disk before commit: {sorted(str(p.relative_to(project)) for p in project.rglob('*'))}"
    )
    print(vfs("diff", "carol", home=home).rstrip())
    print(vfs("commit", "carol", home=home).rstrip())
    print(
        f"files on disk after commit: {sorted(str(p.relative_to(project)) for p in project.rglob('*') if '.git' not in p.parts)}"
    )

    step("agents")
    print(vfs("agents", home=home).rstrip())
    print(f"\ndone; state kept in {root}")


if __name__ == "__main__":
    main()
