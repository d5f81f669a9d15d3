"""Agent and file commands: ``init``, ``agents``, ``info``, ``ls``, ``cat``, ``put``,
``get``, ``rm``, ``mv``, ``cp``, ``mkdir``, ``stat``, ``tree``.

Remote paths are ``agentvfs://AGENT/PATH`` or ``AGENT:PATH``; each command opens
the agent's filesystem, makes one call, and prints.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_module
import sys
from datetime import UTC, datetime
from typing import Any

import click

from vfs.cli.app import main
from vfs.cli.common import home_of, json_option, print_json, split_agent_path
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
@click.argument("agent")
@click.option("--mode", type=click.Choice(MODES), default="sqlite", show_default=True)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    help="An existing directory to use as the disk tree (disk and hybrid modes).",
)
@json_option
@click.pass_context
def init(ctx: click.Context, agent: str, mode: str, workspace: str | None, as_json: bool) -> None:
    """Create AGENT with a workspace in MODE."""
    with Workspace.create(agent, home_of(ctx), mode=mode, workspace=workspace) as ws:
        if as_json:
            print_json(_agent_json(ws))
        else:
            click.echo(f"created agent {agent} ({mode} mode) at {ws.directory}")


@main.command()
@json_option
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """List agents."""
    from vfs.settings import resolve_home
    from vfs.state.registry import Registry

    records = Registry(resolve_home(home_of(ctx))).list()
    if as_json:
        print_json([{"id": r.id, "mode": r.mode, "workspace": str(r.workspace)} for r in records])
        return
    for r in records:
        click.echo(f"{r.id}\t{r.mode}\t{r.workspace}")


@main.command()
@click.argument("agent")
@json_option
@click.pass_context
def info(ctx: click.Context, agent: str, as_json: bool) -> None:
    """Show where AGENT's data lives and how big it is."""
    with Workspace.open(agent, home_of(ctx)) as ws:
        data = _agent_json(ws)
        data["database_bytes"] = sum(
            p.stat().st_size for p in ws.record.db_path.parent.glob("agent.sqlite*")
        )
        if as_json:
            print_json(data)
            return
        for key, value in data.items():
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
    for entry in entries:
        name = entry["name"].rsplit("/", 1)[-1] + ("/" if entry["type"] == "directory" else "")
        if long:
            mode = stat_module.filemode(entry["mode"])
            click.echo(f"{mode} {entry['size']:>10} {_when(entry['mtime'])} {name}")
        else:
            click.echo(name)


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
    fs.put(source, path, recursive=recursive)


@main.command()
@click.argument("source", metavar=REMOTE)
@click.argument("target", type=click.Path())
@click.option("-r", "--recursive", is_flag=True)
@click.pass_context
def get(ctx: click.Context, source: str, target: str, recursive: bool) -> None:
    """Copy a workspace file to a local path."""
    fs, path = _fs(ctx, source)
    fs.get(path, target, recursive=recursive)


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
            value = _when(value)
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
    click.echo(root)
    _print_tree(fs, root, 1)


def _print_tree(fs: AgentFileSystem, path: str, depth: int) -> None:
    for entry in sorted(fs.ls(path, detail=True), key=lambda e: e["name"]):
        is_dir = entry["type"] == "directory" and not entry["islink"]
        click.echo(f"{'    ' * depth}{os.path.basename(entry['name'])}{'/' if is_dir else ''}")
        if is_dir:
            _print_tree(fs, entry["name"], depth + 1)
