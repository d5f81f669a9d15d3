"""``vfs exec``: run a command inside a temporary mount of an agent."""

from __future__ import annotations

import click

from vfs.cli.app import main
from vfs.cli.common import home_of


@main.command("exec")
@click.argument("agent")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--read-only", "-r", is_flag=True, help="Mount read-only: every change fails (EROFS)."
)
@click.pass_context
def exec_command(ctx: click.Context, agent: str, command: tuple[str, ...], read_only: bool) -> None:
    """Run COMMAND with its working directory in a private mount of AGENT.

    Put -- before the command so its options stay its own:
    vfs exec alice -- make -j4

    The mount point is a fresh temporary directory, named to the command in
    $AGENT_VFS_MOUNT; it is unmounted and removed when the command ends, however
    it ends. Exits with the command's status (128+N if signal N killed it;
    127 if it was not found).
    """
    from vfs.mount.run import run_mounted

    ctx.exit(run_mounted(agent, command, home=home_of(ctx), read_only=read_only))
