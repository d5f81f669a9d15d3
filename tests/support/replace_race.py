"""One side of the replace race: a writer that keeps replacing a file, or a reader.

``python -m tests.support.replace_race write HOME AGENT PATH STOP`` replaces
``PATH`` through fsspec (an atomic whole-file replace) until the file ``STOP``
exists; it creates ``STOP.ready`` just before its first replacement.
``python -m tests.support.replace_race read FRONT HOME AGENT PATH N STOP``
waits for ``STOP.ready``, then reads ``PATH`` N times through one front end and
prints one JSON line: how many reads there were, how many failed (with the
first few errors), and how many returned content that is no single version.

Every version is one byte repeated, and its length depends on the byte, so a
read that mixes two versions, or one version's length with another's bytes,
is caught.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

VERSIONS = 26
BASE_SIZE = 150_000  # more than two chunks of the default size


def version(n: int) -> bytes:
    letter = n % VERSIONS
    return bytes([ord("a") + letter]) * (BASE_SIZE + 997 * letter)


def is_version(data: bytes) -> bool:
    return bool(data) and data == version(data[0] - ord("a"))


def write(home: str, agent: str, path: str, stop: str) -> None:
    from vfs.fs import AgentFileSystem

    fs = AgentFileSystem(agent, home=home)
    n = 0
    Path(stop + ".ready").touch()
    while not os.path.exists(stop):
        n += 1
        fs.pipe(path, version(n))
    print(json.dumps({"writes": n}))


def _reader(front: str, home: str, agent: str, path: str) -> Callable[[int], bytes]:
    if front in ("open", "cat"):
        from vfs.fs import AgentFileSystem

        fs = AgentFileSystem(agent, home=home)
        if front == "cat":
            return lambda i: fs.cat(path) if i % 2 else fs.cat_file(path, 0, None)

        def through_open(i: int) -> bytes:
            with fs.open(path, "rb") as f:
                return f.read()

        return through_open
    if front == "cli":
        from click.testing import CliRunner

        from vfs.cli import main

        runner = CliRunner()
        os.environ["AGENT_VFS_HOME"] = home

        def through_cli(i: int) -> bytes:
            result = runner.invoke(main, ["cat", f"{agent}:{path}"])
            if result.exit_code:
                raise OSError(result.output.strip() or repr(result.exception))
            return result.stdout_bytes

        return through_cli
    if front == "vfs":
        import subprocess

        command = [str(Path(sys.executable).with_name("vfs")), "cat", f"{agent}:{path}"]
        env = {**os.environ, "AGENT_VFS_HOME": home}

        def through_vfs(i: int) -> bytes:
            done = subprocess.run(command, capture_output=True, env=env, check=False)
            if done.returncode:
                raise OSError(done.stderr.decode(errors="replace").strip())
            return done.stdout

        return through_vfs
    if front in ("tools", "artifacts"):
        from vfs import Workspace
        from vfs.tools import FileTools

        ws = Workspace.open(agent, home)
        tools = FileTools(ws)
        if front == "tools":
            # The read tool, and grep, which must find the one line every version has.
            def through_tools(i: int) -> bytes:
                if i % 2:
                    found = tools.grep(".", path=path, output="count")["counts"]
                    if len(found) != 1:
                        raise OSError(f"grep found {found}")
                return tools.read(path, max_bytes=1 << 20)["content"].encode()

            return through_tools

        def through_artifacts(i: int) -> bytes:
            run = ws.artifacts.start("replace-race")
            ws.artifacts.attach_file(run.id, "out", path)
            return ws.artifacts.read(run.id, "out")

        return through_artifacts
    if front == "export":
        import tarfile
        import tempfile

        from vfs import Workspace
        from vfs.export import export_tree

        ws = Workspace.open(agent, home)
        scratch = Path(tempfile.mkdtemp())

        def through_export(i: int) -> bytes:
            # A directory and a tar file in turn; only PATH is in the workspace.
            if i % 2:
                export_tree(ws, str(scratch / f"t{i}.tar"))
                with tarfile.open(scratch / f"t{i}.tar") as tar:
                    member = tar.extractfile(path.lstrip("/"))
                    return member.read() if member else b""
            export_tree(ws, str(scratch / f"d{i}"))
            return (scratch / f"d{i}" / path.lstrip("/")).read_bytes()

        return through_export
    if front == "mount":
        # PATH is a host path inside the mount here.
        return lambda i: Path(path).read_bytes()
    if front == "mount-write":

        def overwrite(i: int) -> bytes:
            data = version(i)
            with open(path, "wb") as f:
                f.write(data)
            return data

        return overwrite
    raise SystemExit(f"unknown front end {front!r}")


def read(front: str, home: str, agent: str, path: str, count: int, stop: str) -> None:
    reader = _reader(front, home, agent, path)
    deadline = time.monotonic() + 60
    while not os.path.exists(stop + ".ready") and time.monotonic() < deadline:
        time.sleep(0.01)  # start with the writer's first replacement
    errors: list[str] = []
    failed = mixed = 0
    started = time.monotonic()
    for i in range(count):
        try:
            data = reader(i)
        except Exception as exc:  # every failure is what is being counted
            failed += 1
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if not is_version(data):
            mixed += 1
    seconds = round(time.monotonic() - started, 2)
    report = {"reads": count, "failed": failed, "mixed": mixed, "errors": errors, "s": seconds}
    print(json.dumps(report))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "write":
        write(*args)
    elif command == "read":
        read(args[0], args[1], args[2], args[3], int(args[4]), args[5])
    else:
        raise SystemExit(f"unknown command {command!r}")
