"""``vfs exec``: run a command inside a temporary mount of an agent."""

from __future__ import annotations

import click

from vfs.cli.app import main
from vfs.cli.common import home_of, open_workspace


@main.command("exec")
@click.argument("agent")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--read-only", "-r", is_flag=True, help="Mount read-only: every change fails (EROFS)."
)
@click.option(
    "--fuse",
    "force_fuse",
    is_flag=True,
    help="Mount through FUSE in disk mode too (default there: a bind mount where permitted).",
)
@click.option(
    "--checkpoint",
    "take_checkpoint",
    is_flag=True,
    help="Take a checkpoint first and print its name (on stderr), to roll back to.",
)
@click.pass_context
def exec_command(
    ctx: click.Context,
    agent: str,
    command: tuple[str, ...],
    read_only: bool,
    force_fuse: bool,
    take_checkpoint: bool,
) -> None:
    """Run COMMAND with its working directory in a private mount of AGENT.

    Put -- before the command so its options stay its own:
    vfs exec alice -- make -j4

    The mount point is a fresh temporary directory, named to the command in
    $AGENT_VFS_MOUNT; it is unmounted and removed when the command ends, however
    it ends. Exits with the command's status (128+N if signal N killed it;
    127 if it was not found). With --checkpoint, a checkpoint is taken first
    and its name printed, so a runtime can `vfs rollback AGENT NAME`. A
    disk-mode agent is bind-mounted in a mount namespace of the command's own,
    seen by no other process and gone with the command; where namespaces are
    not allowed, as `vfs mount` would mount it; with --fuse, through FUSE.
    """
    from vfs.mount.run import run_mounted

    if take_checkpoint:
        with open_workspace(ctx, agent) as ws:
            info = ws.checkpoints.create(message=f"before: {' '.join(command)}")
        click.echo(f"checkpoint {info.name}", err=True)
    ctx.exit(run_mounted(agent, command, home=home_of(ctx), read_only=read_only, fuse=force_fuse))
