"""``agentvfs://AGENT/PATH`` through fsspec: the agent a URL names is the agent used,
storage options are checked, and ``read_only`` refuses every write."""

from __future__ import annotations

import errno
import gc
import json
import pickle
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from click.testing import CliRunner

from tests.helpers import REPO, require_mode, run_python, workspace_tree
from vfs import Workspace
from vfs.cli import main
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES, Registry
from vfs.urls import split_target, split_url


@pytest.fixture(params=MODES)
def two_agents(request: pytest.FixtureRequest, home: Path) -> Iterator[tuple[Workspace, Workspace]]:
    """alice and bob in one mode, each holding ``/secret.txt`` and ``/d/f.txt``."""
    require_mode(request.param)
    pair = []
    for agent in ("alice", "bob"):
        ws = Workspace.create(agent, home, mode=request.param)
        ws.fs.pipe("/secret.txt", agent.encode())
        ws.fs.pipe("/d/f.txt", f"{agent} f".encode())
        pair.append(ws)
    yield pair[0], pair[1]
    for ws in pair:
        ws.close()


def _alice(home: Path, **options: Any) -> AgentFileSystem:
    return fsspec.filesystem("agentvfs", agent="alice", home=str(home), **options)


# -- the agent a URL names ----------------------------------------------------

BOB = "agentvfs://bob"
FOREIGN_CALLS: list[tuple[str, Callable[[AgentFileSystem], object]]] = [
    ("cat", lambda fs: fs.cat(f"{BOB}/secret.txt")),
    ("cat_file", lambda fs: fs.cat_file(f"{BOB}/secret.txt", start=0, end=2)),
    ("open rb", lambda fs: fs.open(f"{BOB}/secret.txt", "rb").read()),
    ("open wb", lambda fs: fs.open(f"{BOB}/secret.txt", "wb").write(b"x")),
    ("pipe", lambda fs: fs.pipe(f"{BOB}/secret.txt", b"overwritten")),
    ("info", lambda fs: fs.info(f"{BOB}/secret.txt")),
    ("ls", lambda fs: fs.ls(f"{BOB}/")),
    ("find", lambda fs: fs.find(f"{BOB}/")),
    ("glob", lambda fs: fs.glob(f"{BOB}/*")),
    ("exists", lambda fs: fs.exists(f"{BOB}/secret.txt")),
    ("isfile", lambda fs: fs.isfile(f"{BOB}/secret.txt")),
    ("isdir", lambda fs: fs.isdir(f"{BOB}/d")),
    ("rm", lambda fs: fs.rm(f"{BOB}/secret.txt")),
    ("rm -r", lambda fs: fs.rm(f"{BOB}/d", recursive=True)),
    ("mkdir", lambda fs: fs.mkdir(f"{BOB}/new")),
    ("touch", lambda fs: fs.touch(f"{BOB}/new.txt")),
    ("copy into", lambda fs: fs.copy("/secret.txt", f"{BOB}/copied.txt")),
    ("copy from", lambda fs: fs.copy(f"{BOB}/secret.txt", "/copied.txt")),
    ("mv", lambda fs: fs.mv(f"{BOB}/secret.txt", "/moved.txt")),
    ("checksum", lambda fs: fs.checksum(f"{BOB}/secret.txt")),
]


@pytest.mark.parametrize(("call", "operation"), FOREIGN_CALLS, ids=[c for c, _ in FOREIGN_CALLS])
def test_a_filesystem_refuses_a_url_that_names_another_agent(
    two_agents: tuple[Workspace, Workspace],
    home: Path,
    call: str,
    operation: Callable[[AgentFileSystem], object],
) -> None:
    alice, bob = two_agents
    before = (workspace_tree(alice), workspace_tree(bob))
    fs = _alice(home)
    with pytest.raises(ValueError, match=r"names agent 'bob'.*bound to agent 'alice'"):
        operation(fs)
    assert (workspace_tree(alice), workspace_tree(bob)) == before


def test_a_url_naming_the_filesystems_own_agent_is_its_path(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    fs = _alice(home)
    assert fs.cat("agentvfs://alice/secret.txt") == b"alice"
    assert fs.ls("agentvfs://alice/d", detail=False) == ["/d/f.txt"]
    assert fs.find("agentvfs://alice/") == ["/d/f.txt", "/secret.txt"]
    fs.pipe("agentvfs://alice/new.txt", b"new")
    assert fs.cat("/new.txt") == b"new"


def test_open_files_across_agents_is_refused_before_anything_is_written(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    alice, bob = two_agents
    before = (workspace_tree(alice), workspace_tree(bob))
    urls = ["agentvfs://alice/r.txt", "agentvfs://bob/r.txt"]
    with (
        pytest.raises(ValueError, match="names agent 'bob'"),
        fsspec.open_files(urls, "wb", home=str(home)) as files,
    ):
        for f in files:
            f.write(b"written")
    # Without auto_mkdir fsspec makes no directories first: the check is open_many's.
    with (
        pytest.raises(ValueError, match="names agent 'bob'"),
        fsspec.open_files(urls, "wb", home=str(home), auto_mkdir=False) as files,
    ):
        for f in files:
            f.write(b"written")
    with (
        pytest.raises(ValueError, match="names agent 'bob'"),
        fsspec.open_files(
            ["agentvfs://alice/secret.txt", "agentvfs://bob/secret.txt"], "rb", home=str(home)
        ),
    ):
        pass
    gc.collect()  # a file opened and then abandoned would publish when collected
    assert (workspace_tree(alice), workspace_tree(bob)) == before


def test_open_files_of_one_agent_write_into_that_agent(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    alice, bob = two_agents
    urls = ["agentvfs://bob/r1.txt", "agentvfs://bob/sub/r2.txt"]
    with fsspec.open_files(urls, "wb", home=str(home)) as files:
        for f in files:
            f.write(b"for bob")
    assert bob.fs.cat("/r1.txt") == bob.fs.cat("/sub/r2.txt") == b"for bob"
    assert not alice.fs.exists("/r1.txt")
    assert not alice.fs.exists("/sub")


def test_fsspec_open_reaches_the_agent_each_url_names(home: Path) -> None:
    """One interpreter, several agents: fsspec's instance cache must not mix them."""
    for agent in ("alice", "bob"):
        Workspace.create(agent, home).close()
    out = run_python(
        """
import fsspec
for agent in ("alice", "bob", "alice"):
    with fsspec.open(f"agentvfs://{agent}/who.txt", "w") as f:
        f.write(agent)
    fsspec.filesystem("agentvfs", agent="alice").ls("/")  # a cached alice instance
for agent in ("alice", "bob"):
    with fsspec.open(f"agentvfs://{agent}/who.txt", "r") as f:
        print(agent, f.read())
""",
        env={"AGENT_VFS_HOME": str(home)},
    )
    assert out.split("\n")[:2] == ["alice alice", "bob bob"]


def test_a_url_of_an_unknown_agent_does_not_exist_and_is_not_created(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    fs = _alice(home, create=True)
    url = "agentvfs://nonexistent-agent/x"
    assert fs.exists(url) is False
    assert fs.isfile(url) is False
    assert fs.isdir(url) is False
    assert fs.lexists(url) is False
    with pytest.raises(FileNotFoundError, match="no such agent: nonexistent-agent"):
        fs.cat(url)
    with pytest.raises(FileNotFoundError, match="no such agent: nonexistent-agent"):
        fs.pipe(url, b"x")
    with pytest.raises(FileNotFoundError, match="no such agent: nonexistent-agent"):
        fsspec.open(url, "rb", home=str(home)).open()
    assert not Registry(home).exists("nonexistent-agent")
    assert not (home / "agents" / "nonexistent-agent").exists()
    assert not fs.exists("/x")


def test_agent_option_and_url_must_name_the_same_agent(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    with pytest.raises(ValueError, match="URL names agent 'bob' but agent='alice'"):
        fsspec.open("agentvfs://bob/secret.txt", "rb", agent="alice", home=str(home)).open()
    with fsspec.open("agentvfs://bob/secret.txt", "rb", agent="bob", home=str(home)) as f:
        assert f.read() == b"bob"


def test_a_filesystem_from_a_url_pickles_with_its_agent(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    fs, path = fsspec.core.url_to_fs("agentvfs://bob/secret.txt", home=str(home))
    copy = pickle.loads(pickle.dumps(fs))
    assert copy.agent == "bob"
    assert copy.cat(path) == b"bob"


def test_upath_round_trips_and_reaches_the_agent_it_names(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    upath = pytest.importorskip("upath", reason="universal_pathlib is in the test extra")
    alice, bob = two_agents
    with warnings.catch_warnings():
        # universal_pathlib warns that it has no class of its own for the protocol.
        warnings.simplefilter("ignore", UserWarning)
        path = upath.UPath("agentvfs://bob/notes/todo.md", home=str(home))
        assert str(path) == "agentvfs://bob/notes/todo.md"
        assert str(upath.UPath(str(path), home=str(home))) == str(path)
        assert str(path.parent) == "agentvfs://bob/notes"
        assert str(path.parent / "other.md") == "agentvfs://bob/notes/other.md"
        assert path.name == "todo.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("bob's")
        assert upath.UPath(str(path), home=str(home)).read_text() == "bob's"
        root = upath.UPath("agentvfs://alice/", home=str(home))
        assert sorted(str(p) for p in root.iterdir()) == [
            "agentvfs://alice/d",
            "agentvfs://alice/secret.txt",
        ]
        assert (root / "secret.txt").read_text() == "alice"
    assert bob.fs.cat("/notes/todo.md") == b"bob's"
    assert not alice.fs.exists("/notes")


def test_upath_uses_the_declared_path_class_without_warnings(tmp_path: Path, home: Path) -> None:
    """The ``universal_pathlib.implementations`` entry point that pyproject.toml
    declares, installed as pip would install it, in a fresh interpreter."""
    pytest.importorskip("upath", reason="universal_pathlib is in the test extra")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["universal_pathlib.implementations"]
    dist_info = tmp_path / "site" / "agentvfs_paths-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: agentvfs-paths\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in declared.items())
    (dist_info / "entry_points.txt").write_text(f"[universal_pathlib.implementations]\n{lines}")
    Workspace.create("alice", home).close()
    out = run_python(
        f"""
import sys, warnings
sys.path.append({str(dist_info.parent)!r})
warnings.simplefilter("error")
from upath import UPath
path = UPath("agentvfs://alice/notes/todo.md")
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text("todo")
print(type(path).__name__, path, UPath(str(path)).read_text())
""",
        env={"AGENT_VFS_HOME": str(home)},
    )
    assert out.split() == ["AgentPath", "agentvfs://alice/notes/todo.md", "todo"]


def test_the_instance_cache_follows_agent_vfs_home(tmp_path: Path) -> None:
    homes = [tmp_path / "one", tmp_path / "two"]
    for number, home in enumerate(homes):
        with Workspace.create("alice", home) as ws:
            ws.fs.pipe("/home.txt", str(number).encode())
    out = run_python(
        f"""
import os, fsspec
for home in {[str(h) for h in homes]!r} * 2:
    os.environ["AGENT_VFS_HOME"] = home
    fs = fsspec.filesystem("agentvfs", agent="alice")
    print(fs.cat("/home.txt").decode(), fsspec.open("agentvfs://alice/home.txt").open().read().decode())
"""
    )
    assert out.split() == ["0", "0", "1", "1", "0", "0", "1", "1"]


# -- storage options ------------------------------------------------------------


def test_unknown_storage_options_are_refused_naming_the_accepted_ones(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    with pytest.raises(TypeError, match=r"unknown storage option 'readonly'.*read_only"):
        _alice(home, readonly=True)
    with pytest.raises(TypeError, match="unknown storage option 'colour'"):
        fsspec.open("agentvfs://alice/secret.txt", "rb", colour="red", home=str(home)).open()


def test_create_and_read_only_together_are_refused(home: Path) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        _alice(home, create=True, read_only=True)
    assert not Registry(home).exists("alice")


READ_ONLY_WRITES: list[tuple[str, Callable[[AgentFileSystem], object]]] = [
    ("pipe", lambda fs: fs.pipe("/new.txt", b"x")),
    ("pipe over", lambda fs: fs.pipe("/secret.txt", b"x")),
    ("open wb", lambda fs: fs.open("/new.txt", "wb")),
    ("open ab", lambda fs: fs.open("/secret.txt", "ab")),
    ("open xb", lambda fs: fs.open("/new.txt", "xb")),
    ("write_text", lambda fs: fs.write_text("/new.txt", "x")),
    ("touch", lambda fs: fs.touch("/secret.txt", truncate=False)),
    ("mkdir", lambda fs: fs.mkdir("/newdir")),
    ("makedirs", lambda fs: fs.makedirs("/a/b", exist_ok=True)),
    ("rm", lambda fs: fs.rm("/secret.txt")),
    ("rm -r", lambda fs: fs.rm("/d", recursive=True)),
    ("rmdir", lambda fs: fs.rmdir("/d")),
    ("cp_file", lambda fs: fs.cp_file("/secret.txt", "/copy.txt")),
    ("copy -r", lambda fs: fs.copy("/d", "/d2", recursive=True)),
    ("mv", lambda fs: fs.mv("/secret.txt", "/moved.txt")),
    ("chmod", lambda fs: fs.chmod("/secret.txt", 0o600)),
    ("symlink", lambda fs: fs.symlink("secret.txt", "/link")),
]


@pytest.mark.parametrize(
    ("call", "operation"), READ_ONLY_WRITES, ids=[c for c, _ in READ_ONLY_WRITES]
)
def test_read_only_refuses_every_write_with_erofs(
    two_agents: tuple[Workspace, Workspace],
    home: Path,
    call: str,
    operation: Callable[[AgentFileSystem], object],
) -> None:
    alice, _ = two_agents
    before = workspace_tree(alice)
    fs = _alice(home, read_only=True)
    with pytest.raises(OSError) as raised:
        operation(fs)
    assert raised.value.errno == errno.EROFS
    assert workspace_tree(alice) == before
    assert fs.cat("/secret.txt") == b"alice"
    assert fs.find("/") == ["/d/f.txt", "/secret.txt"]


def test_read_only_through_a_url_and_put(
    two_agents: tuple[Workspace, Workspace], home: Path, tmp_path: Path
) -> None:
    alice, _ = two_agents
    before = workspace_tree(alice)
    with pytest.raises(OSError) as raised:
        fsspec.open("agentvfs://alice/new.txt", "wb", read_only=True, home=str(home)).open()
    assert raised.value.errno == errno.EROFS
    local = tmp_path / "local.txt"
    local.write_bytes(b"local")
    with pytest.raises(OSError) as raised:
        _alice(home, read_only=True).put(str(local), "/local.txt")
    assert raised.value.errno == errno.EROFS
    with fsspec.open("agentvfs://alice/secret.txt", "rb", read_only=True, home=str(home)) as f:
        assert f.read() == b"alice"
    assert workspace_tree(alice) == before


# -- one parser for fsspec and the CLI -------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("agentvfs://alice/notes/a.md", ("alice", "/notes/a.md")),
        ("agentvfs://alice", ("alice", "/")),
        ("agentvfs:///notes/a.md", (None, "/notes/a.md")),
        ("agentvfs:notes/a.md", (None, "/notes/a.md")),
        ("/notes/a.md", (None, "/notes/a.md")),
        ("notes:v2.md", (None, "/notes:v2.md")),
    ],
)
def test_split_url_reads_the_agent_and_the_workspace_path(
    url: str, expected: tuple[str | None, str]
) -> None:
    assert split_url(url) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("alice:/notes/a.md", ("alice", "/notes/a.md")),
        ("alice:notes/a.md", ("alice", "/notes/a.md")),
        ("alice:", ("alice", "/")),
        ("agentvfs://alice/notes/a.md", ("alice", "/notes/a.md")),
        ("agentvfs://alice", ("alice", "/")),
    ],
)
def test_split_target_reads_both_cli_forms(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", ["/notes/a.md", "notes", "agentvfs:///a", "agentvfs://", ""])
def test_split_target_refuses_names_without_an_agent(target: str) -> None:
    with pytest.raises(ValueError, match="is not AGENT:PATH or agentvfs://AGENT/PATH"):
        split_target(target)


def test_the_cli_reads_both_name_forms_and_refuses_a_name_without_an_agent(
    two_agents: tuple[Workspace, Workspace], home: Path
) -> None:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--home", str(home), *args])

    for target in ("bob:/d/f.txt", "bob:d/f.txt", "agentvfs://bob/d/f.txt"):
        result = run("cat", target)
        assert (result.exit_code, result.output) == (0, "bob f"), target
    listing = run("ls", "--json", "agentvfs://bob/d")
    assert [e["name"] for e in json.loads(listing.output)] == ["/d/f.txt"]
    result = run("cat", "agentvfs:///d/f.txt")
    assert result.exit_code == 2
    assert "is not AGENT:PATH or agentvfs://AGENT/PATH" in result.output
    assert "Traceback" not in result.output
