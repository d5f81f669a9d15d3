"""The CLI as a user meets it: agent names, deleting agents, directories without -r,
readable output on a terminal, exact output for scripts, progress on long commands."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import REPO, require_mode, run_vfs
from vfs import Workspace
from vfs.cli import main
from vfs.cli.common import human_size
from vfs.state.registry import MODES, Registry

ZONED_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d")


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.output


def run_on_terminal(*args: str) -> tuple[int, str]:
    """Run ``vfs`` with standard output and error on a pseudo-terminal."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("vfs")), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "160", "LINES": "40"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = process.wait(timeout=120)
    text = b"".join(chunks).decode(errors="replace")
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # drop colours and cursor moves


# -- wrong results ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_put_get_and_cp_of_a_directory_without_r_fail_in_one_line(home, tmp_path, mode) -> None:
    require_mode(mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    run("init", "alice", "--mode", mode, "--workspace", str(tree))
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f.txt").write_text("f")
    code, output = run("put", str(local), "alice:/x")
    assert code == 1 and output == f"Error: {local}: is a directory; use -r\n"
    assert run("ls", "alice:/")[1] == ""
    assert run("put", "-r", str(local), "alice:/x")[0] == 0
    out = tmp_path / "out"
    code, output = run("get", "alice:/x", str(out))
    assert code == 1 and output == "Error: alice:/x: is a directory; use -r\n"
    assert not out.exists()
    assert run("get", "-r", "alice:/x", str(out))[0] == 0
    assert (out / "sub" / "f.txt").read_text() == "f"
    run("init", "bob")
    for target in ("alice:/y", "bob:/y"):
        code, output = run("cp", "alice:/x", target)
        assert code == 1 and output == "Error: alice:/x: is a directory; use -r\n"
        assert run("cp", "-r", "alice:/x", target)[0] == 0
        assert run("cat", f"{target}/sub/f.txt") == (0, "f")


# -- deleting agents -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_agents_rm_asks_then_removes_the_registry_entry_and_the_agent_directory(
    home, tmp_path, mode
) -> None:
    require_mode(mode)
    run("init", "g2", "--mode", mode)
    run("put", "-", "g2:/kept.txt", input="data")
    code, output = run("agents", "rm", "g2", input="n\n")
    assert code == 1 and "Delete agent g2" in output and "Aborted" in output
    assert Registry(home).exists("g2")
    code, output = run("agents", "rm", "g2:", input="y\n")
    assert code == 0, output
    assert not Registry(home).exists("g2")
    assert sorted(p.name for p in (home / "agents").iterdir()) == []
    code, output = run("ls", "g2:")
    assert code == 1 and output == "Error: no such agent: g2\n"
    assert not (home / "agents" / "g2").exists()
    code, output = run("init", "g2", "--mode", mode)
    assert code == 0, output
    assert run("ls", "g2:")[1] == ""  # a new, empty agent: nothing of the old one is back


@pytest.mark.parametrize("mode", ["disk", "hybrid"])
def test_agents_rm_keeps_a_workspace_directory_the_user_owns_unless_asked(
    home, tmp_path, mode
) -> None:
    require_mode(mode)
    tree = tmp_path / "project"
    tree.mkdir()
    (tree / "main.py").write_text("print()")
    run("init", "a1", "--mode", mode, "--workspace", str(tree))
    code, output = run("agents", "rm", "--yes", "a1")
    assert code == 0 and f"kept {tree}" in output
    assert (tree / "main.py").read_text() == "print()"
    run("init", "a2", "--mode", mode, "--workspace", str(tree))
    code, output = run("agents", "rm", "--yes", "--workspace-too", "agentvfs://a2/")
    assert code == 0, output
    assert not tree.exists()
    assert Registry(home).list() == []


def test_agents_rm_cleans_up_an_agent_whose_directory_was_removed_by_hand(home) -> None:
    run("init", "g3")
    shutil.rmtree(home / "agents" / "g3")
    code, output = run("agents", "rm", "--yes", "g3")
    assert code == 0, output
    assert not Registry(home).exists("g3") and not (home / "agents" / "g3").exists()
    assert run("init", "g3")[0] == 0


def test_workspace_delete_is_the_python_call_and_names_a_missing_agent(home) -> None:
    Workspace.create("alice", home).close()
    Workspace.delete("alice", home)
    assert not Registry(home).exists("alice")
    with pytest.raises(FileNotFoundError, match="no such agent: alice"):
        Workspace.delete("alice", home)


def test_agents_rm_refuses_while_the_agent_is_mounted(home, tmp_path) -> None:
    pytest.importorskip("pyfuse3", reason="mounting needs the fuse extra")
    Workspace.create("alice", home).close()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    mounted = run_vfs("mount", "alice", str(mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    try:
        result = run_vfs("agents", "rm", "--yes", "alice")
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: agent alice is mounted at {mountpoint}; unmount it first"
            f" (vfs umount {mountpoint})\n"
        )
        assert Registry(home).exists("alice")
    finally:
        assert run_vfs("umount", str(mountpoint)).returncode == 0
    assert run_vfs("agents", "rm", "--yes", "alice").returncode == 0


def test_mount_without_the_fuse_extra_says_what_to_install(home, tmp_path) -> None:
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pyfuse3', 'trio'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    Workspace.create("alice", home).close()
    (tmp_path / "mnt").mkdir()
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    vfs = str(Path(sys.executable).with_name("vfs"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([vfs, *args], capture_output=True, text=True, env=env, check=False)

    result = run("mount", "alice", str(tmp_path / "mnt"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "pip install 'agentvfs[fuse]'" in result.stderr and "fuse3" in result.stderr
    # Unmounting needs no FUSE library; nothing is mounted there.
    result = run("umount", str(tmp_path / "mnt"))
    assert (result.returncode, result.stderr.strip()[-11:]) == (1, "not mounted")
    # A disk-mode agent is bind-mounted by the kernel: no FUSE library needed either.
    Workspace.create("bob", home, mode="disk").close()
    assert run("mount", "bob", str(tmp_path / "mnt")).returncode == 0
    assert run("mounts").stdout.split()[6:9] == ["bob", str(tmp_path / "mnt"), "bind"]
    assert run("umount", str(tmp_path / "mnt")).returncode == 0


# -- agent names -----------------------------------------------------------------------


def test_every_spelling_of_an_agent_is_accepted(home) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/a.txt", b"a")
    for spelling in ("alice", "alice:", "alice:/", "agentvfs://alice", "agentvfs://alice/"):
        code, output = run("info", "--json", spelling)
        assert code == 0 and json.loads(output)["id"] == "alice", (spelling, output)
        code, output = run("ls", spelling)
        assert code == 0 and output == "a.txt\n", (spelling, output)
        assert run("mode", spelling) == (0, "sqlite\n")
    assert run("cat", "agentvfs://alice/a.txt") == (0, "a")
    code, output = run("info", "alice:/a.txt")
    assert code == 2 and "names a path; this command takes an agent" in output


def test_an_unknown_agent_gets_a_suggestion_and_is_named_once(home) -> None:
    Workspace.create("alice", home).close()
    for args in (["info", "alcie"], ["ls", "alcie:/"], ["artifacts", "ls", "alcie"]):
        code, output = run(*args)
        assert code == 1 and output == "Error: no such agent: alcie (did you mean alice?)\n"
    assert run("info", "zzz") == (1, "Error: no such agent: zzz\n")


# -- output ----------------------------------------------------------------------------


def test_sizes_are_human_on_a_terminal_and_exact_for_scripts(home) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/big.bin", b"x" * (3 << 20))
        ws.fs.pipe("/small.txt", b"hi")
    code, output = run_on_terminal("info", "alice")
    assert code == 0, output
    assert "files: 2" in output and "content_bytes: 3 MiB" in output
    assert re.search(r"database_bytes: [\d.]+ (KiB|MiB)", output)
    info = json.loads(run("info", "--json", "alice")[1])
    assert info["files"] == 2 and info["content_bytes"] == (3 << 20) + 2
    assert isinstance(info["database_bytes"], int) and info["database_bytes"] > 0
    code, output = run_on_terminal("ls", "-l", "alice:/")
    assert "3 MiB" in output and "2 B" in output
    assert str(3 << 20) in run("ls", "-l", "alice:/")[1]
    code, output = run_on_terminal("cache", "stats", "alice")
    assert "budget: 64 MiB" in output
    assert "budget: 67108864" in run("cache", "stats", "alice")[1]


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (1023 * 1024 + 1000, "1024 KiB"),
        (506052608, "483 MiB"),
        (5 << 40, "5 TiB"),
        (5000 << 40, "5000 TiB"),
    ],
)
def test_human_sizes_use_binary_units_and_three_digits(size: int, text: str) -> None:
    assert human_size(size) == text


def test_times_have_one_form_with_a_zone_everywhere(home) -> None:
    with Workspace.create("alice", home) as ws:
        ws.fs.pipe("/a.txt", b"a")
        with ws.artifacts.run("grep", inputs={"q": "todo"}) as handle:
            handle.attach("out.txt", b"found")
    listing = run("ls", "-l", "alice:/")[1]
    stat = run("stat", "alice:/a.txt")[1]
    runs = run("artifacts", "ls", "alice")[1]
    info = run("info", "alice")[1]
    assert run("backup", "alice", str(home.parent / "backups"))[0] == 0
    backups = run("backups", str(home.parent / "backups"), "alice:")[1]
    for output in (listing, stat, runs, info, backups):
        assert ZONED_TIME.search(output), output
    assert "T" not in "".join(ZONED_TIME.findall(stat))


def test_artifacts_show_prints_json_values_not_python_reprs(home) -> None:
    with Workspace.create("alice", home) as ws, ws.artifacts.run("grep", inputs={"q": "todo"}) as h:
        h.attach("out.txt", b"found")
        run_id = h.id
    code, output = run("artifacts", "show", "alice", run_id)
    assert code == 0, output
    assert 'inputs: {"q": "todo"}' in output
    assert "{'" not in output and "None" not in output
    assert re.search(r"started_at: " + ZONED_TIME.pattern, output)
    assert re.search(r"out\.txt\s+5\s", output)


def test_diff_sizes_read_whole_for_every_kind_of_change(home, tmp_path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("123456789")
    (tree / "kept.txt").write_text("abc")
    with Workspace.create("alice", home, mode="hybrid", workspace=tree) as ws:
        ws.fs.rm("README.md")
        ws.fs.pipe("kept.txt", b"abcdef")
        ws.fs.pipe("new.txt", b"n")
    code, output = run("diff", "alice")
    assert code == 0, output
    assert output.splitlines() == [
        "M kept.txt  (3 bytes -> 6 bytes)",
        "A new.txt  (1 bytes)",
        "D README.md  (9 bytes)",
    ] or sorted(output.splitlines()) == sorted(
        ["M kept.txt  (3 bytes -> 6 bytes)", "A new.txt  (1 bytes)", "D README.md  (9 bytes)"]
    )
    assert "->  " not in output and "( " not in output


def test_tree_of_a_missing_path_prints_only_the_error(home) -> None:
    Workspace.create("alice", home).close()
    code, output = run("tree", "alice:/missing")
    assert code == 1 and output.count("\n") == 1 and output.startswith("Error: ")


def test_transcript_show_has_a_header_and_counts_are_pluralised(home) -> None:
    with Workspace.create("alice", home) as ws:
        ws.transcripts.append("s1", {"type": "message", "message": {"content": "hi"}})
        ws.caches.set("agent", "k", "v")
    output = run("transcript", "show", "alice", "s1")[1]
    assert output.splitlines()[0].split() == ["EVENT", "PARENT", "TYPE", "CONTENT"]
    assert "hi" in output
    assert run("cache", "clear", "alice", "agent") == (0, "removed 1 entry\n")
    assert run("cache", "clear", "alice", "agent") == (0, "removed 0 entries\n")


# -- progress ------------------------------------------------------------------------


def test_long_commands_show_progress_on_a_terminal_only(home, tmp_path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    for i in range(30):
        (local / f"{i}.txt").write_text(str(i))
    Workspace.create("alice", home).close()
    code, output = run_on_terminal("put", "-r", str(local), "alice:/up")
    finished = re.findall(r"uploading .* (\d+)/\1 ", output)  # the copies and the directory
    assert code == 0 and finished and int(finished[-1]) >= 30, output
    piped = run_vfs("get", "-r", "alice:/up", str(tmp_path / "down"))
    assert piped.returncode == 0 and piped.stdout == piped.stderr == ""
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "s1.jsonl").write_text('{"type": "message", "id": "e1"}\n')
    code, output = run_on_terminal("migrate", "alice", str(legacy), "--keep-sources")
    assert code == 0 and "importing" in output and "IMPORTED" in output, output
    code, output = run_on_terminal("mode", "alice", "disk")
    assert code == 0 and "moving alice to disk mode" in output, output
    code, output = run_on_terminal("mode", "alice", "sqlite", "--json")
    assert code == 0 and "moving" not in output, output


def test_the_library_reports_progress_of_long_operations(home, tmp_path) -> None:
    from vfs.backends.hybrid.commit import commit, discard
    from vfs.backends.hybrid.diff import scan
    from vfs.settings.switch import switch_mode

    calls: list[tuple[int, int | None]] = []

    def record(done: int, total: int | None) -> None:
        calls.append((done, total))

    with Workspace.create("alice", home) as ws:
        for i in range(5):
            ws.fs.pipe(f"/f{i}", b"x")
    switch_mode("alice", "hybrid", home, progress=record)
    assert calls[-1] == (5, None)
    calls.clear()
    with Workspace.open("alice", home) as ws:
        for i in range(3):
            ws.fs.pipe(f"/n{i}", b"y")
        steps = len(scan(ws.files_backend).changes)  # type: ignore[arg-type]
        commit(ws.files_backend, progress=record)  # type: ignore[arg-type]
    assert calls and calls[-1][0] == calls[-1][1] and steps == 3
    calls.clear()
    with Workspace.open("alice", home) as ws:
        ws.fs.pipe("/d1", b"1")
        ws.fs.pipe("/d2", b"2")
        assert discard(ws.files_backend, ["/d1", "/d2"], record) == 2  # type: ignore[arg-type]
    assert calls == [(1, 2), (2, 2)]
    calls.clear()
    with Workspace.open("alice", home) as ws:
        for _ in range(4):
            with ws.artifacts.run("t"):
                pass
        ws.artifacts.gc(keep_last=1, progress=record)
    assert calls == [(1, 3), (2, 3), (3, 3)]
