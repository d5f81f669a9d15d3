"""Agent and file commands: ``init``, ``agents``, ``info``, ``ls``, ``cat``, ``put``,
``get``, ``rm``, ``mv``, ``cp``, ``mkdir``, ``stat``, ``tree``.

Remote paths are ``agentvfs://AGENT/PATH`` or ``AGENT:PATH`` (``AGENT`` alone is
its root); each command opens the agent's filesystem, makes one call, and prints.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as stat_module
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from fsspec.callbacks import Callback

from vfs.cli.app import main
from vfs.cli.common import (
    agent_argument,
    home_of,
    json_option,
    print_json,
    print_table,
    progress,
    show_size,
    show_time,
    split_agent_path,
)
from vfs.fs import AgentFileSystem
from vfs.state.registry import MODES
from vfs.workspace import Workspace

REMOTE = "AGENT:PATH"


def _fs(ctx: click.Context, target: str) -> tuple[AgentFileSystem, str]:
    agent, path = split_agent_path(target)
    return AgentFileSystem(agent=agent, home=home_of(ctx), skip_instance_cache=True), path


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def _agent_json(ws: Workspace) -> dict[str, Any]:
    record = ws.record
    return {
        "id": record.id,
        "mode": record.mode,
        "database": str(record.db_path),
        "workspace": str(record.workspace),
        "created": _when(record.created_at),
    }


@main.command()
@agent_argument()
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="Default: AGENT_VFS_MODE, else config.toml ([agents.AGENT], then [defaults]), else sqlite.",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    help="An existing directory to use as the disk tree (disk and hybrid modes).",
)
@json_option
@click.pass_context
def init(
    ctx: click.Context, agent: str, mode: str | None, workspace: str | None, as_json: bool
) -> None:
    """Create AGENT with a workspace in MODE."""
    with Workspace.create(agent, home_of(ctx), mode=mode, workspace=workspace) as ws:
        if as_json:
            print_json(_agent_json(ws))
        else:
            click.echo(f"created agent {agent} ({ws.mode} mode) at {ws.directory}")


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """List agents (and remove one with `vfs agents rm`)."""
    if ctx.invoked_subcommand is not None:
        return
    from vfs.settings import resolve_home
    from vfs.state.registry import Registry

    records = Registry(resolve_home(home_of(ctx))).list()
    if as_json:
        print_json([{"id": r.id, "mode": r.mode, "workspace": str(r.workspace)} for r in records])
        return
    print_table(["AGENT", "MODE", "WORKSPACE"], [[r.id, r.mode, r.workspace] for r in records])


@agents.command("rm")
@agent_argument()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--workspace-too",
    is_flag=True,
    help="Also delete a workspace directory given at `vfs init --workspace`"
    " (kept by default: it is yours).",
)
@click.pass_context
def agents_rm(ctx: click.Context, agent: str, yes: bool, workspace_too: bool) -> None:
    """Delete AGENT: its registry entry and its directory under the home.

    Refused while AGENT is mounted. A disk or hybrid workspace directory that
    lives outside the home is left alone unless --workspace-too is given.
    """
    from vfs.settings import resolve_home
    from vfs.state.registry import Registry

    home = resolve_home(home_of(ctx))
    registry = Registry(home)
    try:
        record = registry.get(agent)
    finally:
        registry.db.close()
    own = registry.agent_dir(agent)
    outside = not record.workspace.is_relative_to(own)
    what = f"agent {agent} and {own}"
    if workspace_too and outside:
        what += f" and its workspace {record.workspace}"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True, err=True)
    Workspace.delete(agent, home, workspace_too=workspace_too)
    click.echo(f"deleted {what}")
    if outside and not workspace_too:
        click.echo(f"kept {record.workspace}", err=True)


@main.command()
@agent_argument()
@json_option
@click.pass_context
def info(ctx: click.Context, agent: str, as_json: bool) -> None:
    """Show where AGENT's data lives and how big it is."""
    with Workspace.open(agent, home_of(ctx)) as ws:
        data = _agent_json(ws)
        data["database_bytes"] = sum(
            p.stat().st_size for p in ws.record.db_path.parent.glob("agent.sqlite*")
        )
        files = ws.fs.find("/", detail=True, withdirs=False)
        data["files"] = len(files)
        data["content_bytes"] = sum(entry["size"] for entry in files.values())
    if as_json:
        print_json(data)
        return
    created = show_time(ws.record.created_at)
    for key, value in data.items():
        if key.endswith("_bytes"):
            value = show_size(value)
        elif key == "created":
            value = created
        click.echo(f"{key}: {value}")


@main.command()
@click.argument("target", metavar=REMOTE)
@click.option("-l", "--long", is_flag=True, help="Show mode, size and time.")
@json_option
@click.pass_context
def ls(ctx: click.Context, target: str, long: bool, as_json: bool) -> None:
    """List a directory."""
    fs, path = _fs(ctx, target)
    entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
    if as_json:
        print_json(entries)
        return
    names = [
        entry["name"].rsplit("/", 1)[-1] + ("/" if entry["type"] == "directory" else "")
        for entry in entries
    ]
    if not long:
        for name in names:
            click.echo(name)
        return
    print_table(
        ["MODE", "SIZE", "MODIFIED", "NAME"],
        [
            [stat_module.filemode(e["mode"]), show_size(e["size"]), show_time(e["mtime"]), name]
            for e, name in zip(entries, names, strict=True)
        ],
    )


@main.command()
@click.argument("target", metavar=REMOTE)
@click.pass_context
def cat(ctx: click.Context, target: str) -> None:
    """Write a file's content to standard output."""
    fs, path = _fs(ctx, target)
    with fs.open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)


@main.command()
@click.argument("source", type=click.Path(exists=True, allow_dash=True))
@click.argument("target", metavar=REMOTE)
@click.option("-r", "--recursive", is_flag=True)
@click.pass_context
def put(ctx: click.Context, source: str, target: str, recursive: bool) -> None:
    """Copy a local file (or - for standard input) into a workspace."""
    fs, path = _fs(ctx, target)
    if source == "-":
        with fs.open(path, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        return
    if os.path.isdir(source) and not recursive:
        raise IsADirectoryError(errno.EISDIR, "is a directory; use -r", source)
    with _file_progress("uploading", recursive) as callback:
        fs.put(source, path, recursive=recursive, callback=callback)


@main.command()
@click.argument("source", metavar=REMOTE)
@click.argument("target", type=click.Path())
@click.option("-r", "--recursive", is_flag=True)
@click.pass_context
def get(ctx: click.Context, source: str, target: str, recursive: bool) -> None:
    """Copy a workspace file to a local path."""
    fs, path = _fs(ctx, source)
    if not recursive and fs.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory; use -r", source)
    with _file_progress("downloading", recursive) as callback:
        fs.get(path, target, recursive=recursive, callback=callback)


class _FileCount(Callback):
    """fsspec's per-transfer callback, passed on as files done of files in all."""

    def __init__(self, report: Any) -> None:
        super().__init__()
        self.report = report

    def call(self, *args: Any, **kwargs: Any) -> None:
        self.report(self.value, self.size or 0)


@contextmanager
def _file_progress(label: str, recursive: bool) -> Iterator[Callback]:
    with progress(label, enabled=recursive) as report:
        yield Callback() if report is None else _FileCount(report)


@main.command()
@click.argument("target", metavar=REMOTE)
@click.option("-r", "--recursive", is_flag=True, help="Remove directories and their contents.")
@click.pass_context
def rm(ctx: click.Context, target: str, recursive: bool) -> None:
    """Remove a file (or a tree with -r)."""
    fs, path = _fs(ctx, target)
    if fs.isdir(path) and not recursive:
        raise IsADirectoryError(21, "Is a directory (use -r)", path)
    fs.rm(path, recursive=recursive)


@main.command()
@click.argument("source", metavar=REMOTE)
@click.argument("target", metavar=REMOTE)
@click.pass_context
def mv(ctx: click.Context, source: str, target: str) -> None:
    """Rename within one agent."""
    fs, path1 = _fs(ctx, source)
    agent2, path2 = split_agent_path(target)
    if agent2 != fs.agent:
        raise click.UsageError("mv works within one agent; use cp then rm across agents")
    fs.mv(path1, path2, recursive=True)


@main.command()
@click.argument("source", metavar=REMOTE)
@click.argument("target", metavar=REMOTE)
@click.option("-r", "--recursive", is_flag=True)
@click.pass_context
def cp(ctx: click.Context, source: str, target: str, recursive: bool) -> None:
    """Copy within an agent (sharing content) or between agents."""
    fs1, path1 = _fs(ctx, source)
    fs2, path2 = _fs(ctx, target)
    if not recursive and fs1.isdir(path1):
        raise IsADirectoryError(errno.EISDIR, "is a directory; use -r", source)
    if fs1.agent == fs2.agent:
        fs1.copy(path1, path2, recursive=recursive)
        return
    for src in fs1.find(path1, withdirs=False) if recursive else [path1]:
        dest = path2 + src[len(path1) :] if recursive else path2
        with fs1.open(src, "rb") as fin, fs2.open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)


@main.command()
@click.argument("target", metavar=REMOTE)
@click.option("-p", "--parents", is_flag=True, help="No error if it exists; make parents.")
@click.pass_context
def mkdir(ctx: click.Context, target: str, parents: bool) -> None:
    """Create a directory."""
    fs, path = _fs(ctx, target)
    if parents:
        fs.makedirs(path, exist_ok=True)
    else:
        fs.mkdir(path, create_parents=False)


@main.command(name="stat")
@click.argument("target", metavar=REMOTE)
@json_option
@click.pass_context
def stat_(ctx: click.Context, target: str, as_json: bool) -> None:
    """Show a path's metadata."""
    fs, path = _fs(ctx, target)
    entry = fs.info(path)
    if as_json:
        print_json(entry)
        return
    for key in ("name", "type", "size", "mode", "uid", "gid", "ino", "nlink", "mtime", "created"):
        value = entry[key]
        if key == "mode":
            value = f"{stat_module.filemode(value)} ({oct(stat_module.S_IMODE(value))})"
        elif key in ("mtime", "created"):
            value = show_time(value)
        elif key == "size":
            value = show_size(value)
        click.echo(f"{key}: {value}")
    if entry.get("islink"):
        click.echo(f"destination: {entry['destination']}")


@main.command()
@click.argument("target", metavar=REMOTE)
@json_option
@click.pass_context
def tree(ctx: click.Context, target: str, as_json: bool) -> None:
    """Show a directory tree."""
    fs, path = _fs(ctx, target)
    root = fs._strip_protocol(path)
    if as_json:
        print_json(sorted(fs.find(root, withdirs=True)))
        return
    if not fs.isdir(root):
        fs.info(root)  # a missing path fails here, before any line is printed
        click.echo(root)
        return
    click.echo(root)
    _print_tree(fs, root, 1)


def _print_tree(fs: AgentFileSystem, path: str, depth: int) -> None:
    for entry in sorted(fs.ls(path, detail=True), key=lambda e: e["name"]):
        is_dir = entry["type"] == "directory" and not entry["islink"]
        click.echo(f"{'    ' * depth}{os.path.basename(entry['name'])}{'/' if is_dir else ''}")
        if is_dir:
            _print_tree(fs, entry["name"], depth + 1)
