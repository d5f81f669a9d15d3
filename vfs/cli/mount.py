"""``vfs mount``, ``vfs umount``, ``vfs mounts``: FUSE mounts of agent workspaces."""

from __future__ import annotations

import click

from vfs.cli.app import main
from vfs.cli.common import agent_argument, home_of, json_option, print_json, print_table, show_time
from vfs.settings import resolve_home
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry

FUSE_MODULES = ("pyfuse3", "trio")


def _need_fuse() -> None:
    """Fail in one line, not a traceback, when the ``fuse`` extra is not installed."""
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "pyfuse3"
        raise click.ClickException(
            f"mounting needs the fuse extra ({missing} is not installed):"
            " pip install 'agentvfs[fuse]' (needs the system packages fuse3 and libfuse3-dev)"
        ) from None


@main.command("mount")
@agent_argument()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", "-f", is_flag=True, help="Serve in this process until unmounted.")
@click.option("--read-only", "-r", is_flag=True, help="Refuse every change (EROFS).")
@click.option(
    "-o",
    "options",
    multiple=True,
    metavar="OPT[,OPT...]",
    help="FUSE mount options, e.g. -o allow_other.",
)
@click.option(
    "--cache-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds the kernel caches names and attributes. Default: long in sqlite "
    "and hybrid mode (the mount follows the change journal), 1 in disk mode, "
    "where it bounds how stale changes made by other processes may look.",
)
@click.pass_context
def mount_command(
    ctx: click.Context,
    agent: str,
    mountpoint: str,
    foreground: bool,
    read_only: bool,
    options: tuple[str, ...],
    cache_timeout: float | None,
) -> None:
    """Mount AGENT's workspace at MOUNTPOINT (an empty directory).

    Returns once the mount is ready and serves it in the background; stop it
    with `vfs umount MOUNTPOINT`. Needs the fuse extra: pip install 'agentvfs[fuse]'.
    """
    _need_fuse()
    from vfs.mount.process import check_mountable, start
    from vfs.mount.session import serve

    home = resolve_home(home_of(ctx))
    if foreground:
        where = check_mountable(agent, mountpoint, home)
        serve(
            agent,
            where,
            home=home,
            read_only=read_only,
            options=options,
            cache_timeout=cache_timeout,
            on_ready=lambda: click.echo(f"mounted {agent} at {where}", err=True),
        )
        return
    process = start(
        agent,
        mountpoint,
        home=home,
        read_only=read_only,
        options=options,
        cache_timeout=cache_timeout,
    )
    click.echo(f"mounted {agent} at {mountpoint} (pid {process.pid})")


@main.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--lazy", "-z", is_flag=True, help="Detach now even if files are open; finish after they close."
)
@click.pass_context
def umount_command(ctx: click.Context, mountpoint: str, lazy: bool) -> None:
    """Unmount MOUNTPOINT after every open file is flushed."""
    _need_fuse()
    from vfs.mount.process import unmount

    unmount(mountpoint, home=home_of(ctx), lazy=lazy)


@main.command("mounts")
@json_option
@click.pass_context
def mounts_command(ctx: click.Context, as_json: bool) -> None:
    """List active mounts (records of processes that died are dropped)."""
    records = MountTable(Registry(resolve_home(home_of(ctx))).db).list()
    if as_json:
        print_json(
            [
                {
                    "agent": r.agent,
                    "mountpoint": str(r.mountpoint),
                    "pid": r.pid,
                    "started_at": r.started_at,
                }
                for r in records
            ]
        )
        return
    print_table(
        ["AGENT", "MOUNT POINT", "PID", "SINCE"],
        [[r.agent, r.mountpoint, r.pid, show_time(r.started_at)] for r in records],
    )
