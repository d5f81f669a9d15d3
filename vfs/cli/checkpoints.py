"""Checkpoint commands: ``checkpoint``, ``checkpoint rm``, ``checkpoints``, ``rollback``."""

from __future__ import annotations

from typing import Any

import click

from vfs.cli.app import Group, main
from vfs.cli.common import (
    agent_argument,
    human_size,
    json_option,
    open_workspace,
    plural,
    print_json,
    print_table,
    show_time,
)


class CheckpointGroup(Group):
    """``vfs checkpoint AGENT [NAME]`` creates; ``vfs checkpoint rm AGENT NAME`` deletes.

    Arguments that do not start with a subcommand's name go to ``create``, so
    the common case needs no subcommand (an agent named like a subcommand is
    written ``vfs checkpoint create AGENT``).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["create", *args]
        return super().parse_args(ctx, args)


@main.group(cls=CheckpointGroup)
def checkpoint() -> None:
    """Take a checkpoint of AGENT's files: `vfs checkpoint AGENT [NAME] [-m MESSAGE]`.

    A checkpoint is a named, read-only copy of the files that shares their
    content: roll back to it (`vfs rollback`), compare with it
    (`vfs diff AGENT --from NAME`), read it (agentvfs://AGENT/.vfs/checkpoints/NAME/),
    delete it (`vfs checkpoint rm AGENT NAME`).
    """


@checkpoint.command()
@agent_argument()
@click.argument("name", required=False)
@click.option("-m", "--message", help="Say what the checkpoint is before.")
@json_option
@click.pass_context
def create(
    ctx: click.Context, agent: str, name: str | None, message: str | None, as_json: bool
) -> None:
    """Take checkpoint NAME (default: a timestamp) of AGENT's files; prints its name."""
    with open_workspace(ctx, agent) as ws:
        info = ws.checkpoints.create(name, message)
    if as_json:
        print_json(info.as_dict())
    else:
        click.echo(info.name)


@checkpoint.command("rm")
@agent_argument()
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.pass_context
def remove(ctx: click.Context, agent: str, names: tuple[str, ...]) -> None:
    """Delete checkpoints of AGENT (their content is freed unless files still use it)."""
    with open_workspace(ctx, agent) as ws:
        for name in names:
            ws.checkpoints.delete(name)
    click.echo(f"deleted {plural(len(names), 'checkpoint')}")


@main.command()
@agent_argument()
@json_option
@click.pass_context
def checkpoints(ctx: click.Context, agent: str, as_json: bool) -> None:
    """List AGENT's checkpoints, oldest first."""
    with open_workspace(ctx, agent, read_only=True) as ws:
        found = ws.checkpoints.list()
    if as_json:
        print_json([info.as_dict() for info in found])
        return
    if not found:
        click.echo(f"{agent} has no checkpoints")
        return
    rows: list[list[Any]] = [
        [c.name, show_time(c.created_at), c.mode, c.files, human_size(c.bytes), c.message]
        for c in found
    ]
    print_table(["NAME", "CREATED", "MODE", "FILES", "SIZE", "MESSAGE"], rows)


@main.command()
@agent_argument()
@click.argument("name")
@click.pass_context
def rollback(ctx: click.Context, agent: str, name: str) -> None:
    """Put AGENT's files back as they were at checkpoint NAME (all or nothing).

    Artifacts, caches, sessions and transcripts are not rolled back. Refused
    while AGENT is mounted.
    """
    with open_workspace(ctx, agent) as ws:
        ws.checkpoints.restore(name)
    click.echo(f"{agent}: rolled back to {name}")
