"""Overlay and mode commands: ``diff`` (also against checkpoints), ``commit``, ``discard``, ``mode``."""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
from dataclasses import asdict
from typing import Any

import click

from vfs.backends import Backend
from vfs.backends.hybrid.diff import Change
from vfs.backends.hybrid.overlay import Overlay
from vfs.backends.progress import no_progress
from vfs.checkpoints import diff_trees
from vfs.cli.app import main
from vfs.cli.common import (
    agent_argument,
    home_of,
    json_option,
    on_terminal,
    open_workspace,
    plural,
    print_json,
    progress,
    show_size,
)
from vfs.settings import resolve_home
from vfs.settings.config import requested_mode
from vfs.settings.switch import abort_switch, switch_mode, unfinished_switch
from vfs.state.registry import MODES, Registry
from vfs.workspace import Workspace

PATCH_LIMIT = 8 << 20  # larger files are reported, not diffed


def _line(change: Change) -> str:
    mark = {"added": "A", "modified": "M", "deleted": "D", "renamed": "R"}[change.kind]
    name = change.path + ("/" if change.type == "dir" else "")
    if change.old_path:
        name = f"{change.old_path} -> {name}"
    sizes = [_size(n) for n in (change.old_size, change.size) if n is not None]
    if change.type != "file" or not sizes:
        return f"{mark} {name}"
    return f"{mark} {name}  ({' -> '.join(sizes)})"


def _size(n: int) -> str:
    return show_size(n) if on_terminal() else f"{n} bytes"


def _text(data: bytes | None) -> list[str] | None:
    if data is None:
        return []
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _patch(overlay: Overlay, change: Change) -> str:
    if change.type != "file":
        return ""
    old: bytes | None = None
    new: bytes | None = None
    lower_path = change.old_path or change.path
    if change.kind != "added":
        old = overlay.disk_bytes(lower_path, PATCH_LIMIT)
    if change.kind != "deleted" and (change.size or 0) <= PATCH_LIMIT:
        new = overlay.overlay_bytes(change.path, PATCH_LIMIT)
    before, after = _text(old), _text(new)
    if before is None or after is None:
        return f"Binary files a/{lower_path} and b/{change.path} differ\n"
    lines = difflib.unified_diff(
        before,
        after,
        "/dev/null" if change.kind == "added" else f"a/{lower_path}",
        "/dev/null" if change.kind == "deleted" else f"b/{change.path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)  # fmt: skip


@main.command()
@agent_argument()
@click.option("--patch", is_flag=True, help="Show unified diffs of changed text files.")
@click.option("--from", "from_name", metavar="NAME",
              help="Compare checkpoint NAME with the files now (any mode).")  # fmt: skip
@click.option("--to", "to_name", metavar="NAME",
              help="With --from: compare with checkpoint NAME instead of the files now.")  # fmt: skip
@json_option
@click.pass_context
def diff(
    ctx: click.Context,
    agent: str,
    patch: bool,
    from_name: str | None,
    to_name: str | None,
    as_json: bool,
) -> None:
    """Show what AGENT's overlay changed against its disk tree (hybrid mode),
    or what changed since a checkpoint (--from, any mode)."""
    if to_name is not None and from_name is None:
        raise click.UsageError("--to needs --from")
    with open_workspace(ctx, agent) as ws:
        if from_name is not None:
            _checkpoint_diff(ws, from_name, to_name, patch, as_json)
            return
        overlay = ws.overlay
        changes = overlay.diff()
        if as_json:
            print_json([c.as_dict() for c in changes])
            return
        for change in changes:
            click.echo(_patch(overlay, change) if patch else _line(change), nl=not patch)


def _checkpoint_diff(
    ws: Workspace, from_name: str, to_name: str | None, patch: bool, as_json: bool
) -> None:
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(ws.checkpoints.reading(from_name))
        new = (
            ws.files_backend
            if to_name is None
            else stack.enter_context(ws.checkpoints.reading(to_name))
        )
        changes = diff_trees(old, new)
        if as_json:
            print_json([c.as_dict() for c in changes])
            return
        for change in changes:
            if not patch:
                mark = {"added": "A", "modified": "M", "deleted": "D"}[change.kind]
                sizes = [_size(n) for n in (change.old_size, change.size) if n is not None]
                shown = change.path.lstrip("/") + ("/" if change.type == "dir" else "")
                extra = f"  ({' -> '.join(sizes)})" if change.type == "file" else ""
                click.echo(f"{mark} {shown}{extra}")
            elif change.type == "file":
                before = _content(old, change.path) if change.kind != "added" else None
                after = _content(new, change.path) if change.kind != "deleted" else None
                click.echo(_unified(before, after, change.path.lstrip("/"), change.kind), nl=False)


def _content(backend: Backend, path: str) -> bytes | None:
    attr = backend.resolve(path)
    return None if attr.size > PATCH_LIMIT else backend.read(attr.ino, 0, attr.size)


def _unified(old: bytes | None, new: bytes | None, path: str, kind: str) -> str:
    before, after = _text(old), _text(new)
    if before is None or after is None:
        return f"Binary files a/{path} and b/{path} differ\n"
    lines = difflib.unified_diff(
        before,
        after,
        "/dev/null" if kind == "added" else f"a/{path}",
        "/dev/null" if kind == "deleted" else f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)  # fmt: skip


@main.command()
@agent_argument()
@click.argument("paths", nargs=-1)
@click.option("--force", is_flag=True, help="Commit over files that changed on disk meanwhile.")
@json_option
@click.pass_context
def commit(
    ctx: click.Context, agent: str, paths: tuple[str, ...], force: bool, as_json: bool
) -> None:
    """Apply AGENT's overlay changes (all, or those at or under PATHS) to its disk tree."""
    with open_workspace(ctx, agent) as ws, progress("committing", enabled=not as_json) as bar:
        report = ws.overlay.commit(list(paths), force=force, progress=bar or no_progress)
    if as_json:
        print_json(report.as_dict())
    else:
        if report.resumed:
            click.echo("finished an interrupted commit")
        for change in report.committed:
            click.echo(_line(change))
        for conflict in report.conflicts:
            click.echo(f"conflict: {conflict.path}: {conflict.reason}", err=True)
    if report.conflicts:
        raise click.ClickException(
            f"{plural(len(report.conflicts), 'path')} not committed because the disk changed;"
            " see `vfs diff`, then `vfs discard` them or commit with --force"
        )


@main.command()
@agent_argument()
@click.argument("paths", nargs=-1)
@json_option
@click.pass_context
def discard(ctx: click.Context, agent: str, paths: tuple[str, ...], as_json: bool) -> None:
    """Drop AGENT's overlay changes (all, or those at or under PATHS)."""
    with open_workspace(ctx, agent) as ws, progress("discarding", enabled=not as_json) as bar:
        dropped = ws.overlay.discard(list(paths), progress=bar or no_progress)
    if as_json:
        print_json({"discarded": dropped})
    else:
        click.echo(f"discarded {plural(dropped, 'change')}")


@main.command()
@agent_argument()
@click.argument("new_mode", metavar="[MODE]", required=False, type=click.Choice(MODES))
@click.option("--apply", "apply_setting", is_flag=True,
              help="Switch to the mode AGENT_VFS_MODE or config.toml asks for.")  # fmt: skip
@click.option("--force", is_flag=True, help="hybrid -> disk: commit over conflicts.")
@click.option("--abort", is_flag=True, help="Undo a switch that stopped on an error.")
@json_option
@click.pass_context
def mode(
    ctx: click.Context,
    agent: str,
    new_mode: str | None,
    apply_setting: bool,
    force: bool,
    abort: bool,
    as_json: bool,
) -> None:
    """Show AGENT's workspace mode, or switch it to MODE (moving the data)."""
    home = resolve_home(home_of(ctx))
    if abort:
        if new_mode is not None or apply_setting:
            raise click.UsageError("--abort takes no MODE or --apply")
        undone = abort_switch(agent, home)
        if as_json:
            print_json({"agent": agent, "aborted": None if undone is None else asdict(undone)})
        elif undone is None:
            click.echo(f"{agent} has no unfinished mode switch")
        else:
            click.echo(f"{agent}: undid the switch to {undone.to_mode} mode; {undone.from_mode}")
        return
    current = Registry(home).get(agent).mode
    asked = requested_mode(agent, home)
    if apply_setting:
        if new_mode is not None:
            raise click.UsageError("give MODE or --apply, not both")
        if asked is None:
            raise OSError(errno.ENOENT, "no AGENT_VFS_MODE or config.toml mode applies", agent)
        new_mode = asked.mode
    if new_mode is None:
        info: dict[str, Any] = {"agent": agent, "mode": current}
        if asked is not None:
            info.update(requested=asked.mode, requested_by=asked.source)
        stopped = unfinished_switch(agent, home)
        if stopped is not None:
            info["unfinished_switch"] = {**asdict(stopped.switch), "error": stopped.reason}
        if as_json:
            print_json(info)
            return
        click.echo(current)
        if stopped is not None:
            click.echo(f"warning: {stopped}", err=True)
        if asked is not None and asked.mode != current:
            click.echo(
                f"note: {asked.source} asks for {asked.mode} mode; `vfs mode {agent} --apply`",
                err=True,
            )
        return
    with progress(f"moving {agent} to {new_mode} mode", enabled=not as_json) as bar:
        report = switch_mode(agent, new_mode, home, force=force, progress=bar or no_progress)
    if as_json:
        print_json(asdict(report))
        return
    if report.resumed:
        click.echo("finished an interrupted mode switch")
    if report.undone is not None:
        click.echo(f"{agent}: undid the switch to {report.undone} mode; {report.to_mode}")
    elif report.changed:
        click.echo(f"{agent}: {report.from_mode} -> {report.to_mode}")
    else:
        click.echo(f"{agent} is in {report.to_mode} mode already")
    if report.config_updated:
        click.echo(f"updated {os.path.join(home, 'config.toml')}")
