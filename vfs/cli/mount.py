"""``vfs mount``, ``vfs umount``, ``vfs mounts``: mounts of agent workspaces (FUSE, or a
kernel bind mount of a disk-mode workspace)."""

from __future__ import annotations

import click

from vfs.cli.app import main
from vfs.cli.common import agent_argument, home_of, json_option, print_json, print_table, show_time
from vfs.settings import resolve_home
from vfs.state.mounts import MountTable
from vfs.state.registry import Registry


@main.command("mount")
@agent_argument()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--foreground",
    "-f",
    is_flag=True,
    help="Serve through FUSE in this process until unmounted.",
)
@click.option(
    "--fuse",
    "force_fuse",
    is_flag=True,
    help="Serve through FUSE in disk mode too (default there: a kernel bind mount"
    " where this process may mount, e.g. as root; FUSE otherwise).",
)
@click.option("--read-only", "-r", is_flag=True, help="Refuse every change (EROFS).")
@click.option(
    "-o",
    "options",
    multiple=True,
    metavar="OPT[,OPT...]",
    help="FUSE mount options, e.g. -o allow_other (a bind mount takes only what"
    " it always is: allow_other, allow_root, default_permissions, nosuid, nodev; dev"
    " is ignored).",
)
@click.option(
    "--cache-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds the kernel caches names and attributes of a FUSE mount. Default: "
    "long in sqlite mode and for what the mount itself created in hybrid mode (the "
    "mount follows the change journal); 1 elsewhere, where it bounds how stale "
    "changes made by other processes (or in hybrid's disk tree) may look.",
)
@click.pass_context
def mount_command(
    ctx: click.Context,
    agent: str,
    mountpoint: str,
    foreground: bool,
    force_fuse: bool,
    read_only: bool,
    options: tuple[str, ...],
    cache_timeout: float | None,
) -> None:
    """Mount AGENT's workspace at MOUNTPOINT (an empty directory).

    Returns once the mount is ready and serves it in the background; stop it
    with `vfs umount MOUNTPOINT`. A disk-mode workspace is a real directory:
    where this process may mount (root), the kernel serves it with a bind
    mount, at native speed and with no process to keep running; elsewhere, and
    in the other modes, a FUSE process serves it, which needs the fuse extra:
    pip install 'agentvfs[fuse]'.
    """
    from vfs.mount.process import check_mountable, need_fuse, start

    home = resolve_home(home_of(ctx))
    if foreground:
        need_fuse()
        from vfs.mount.session import serve

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
    mount = start(
        agent,
        mountpoint,
        home=home,
        read_only=read_only,
        options=options,
        cache_timeout=cache_timeout,
        fuse=force_fuse,
    )
    server = "bind mount" if mount.process is None else f"FUSE, pid {mount.pid}"
    click.echo(f"mounted {agent} at {mountpoint} ({server})")


@main.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--lazy", "-z", is_flag=True, help="Detach now even if files are open; finish after they close."
)
@click.pass_context
def umount_command(ctx: click.Context, mountpoint: str, lazy: bool) -> None:
    """Unmount MOUNTPOINT after every open file is flushed."""
    from vfs.mount.process import unmount

    unmount(mountpoint, home=home_of(ctx), lazy=lazy)


@main.command("mounts")
@json_option
@click.pass_context
def mounts_command(ctx: click.Context, as_json: bool) -> None:
    """List active mounts and what serves each: a FUSE process or a bind mount.

    Records of mounts that are gone (a FUSE process that died, a bind mount
    unmounted behind vfs's back) are dropped.
    """
    records = MountTable(Registry(resolve_home(home_of(ctx))).db).list()
    if as_json:
        print_json(
            [
                {
                    "agent": r.agent,
                    "mountpoint": str(r.mountpoint),
                    "kind": r.kind,
                    "pid": r.pid or None,
                    "started_at": r.started_at,
                }
                for r in records
            ]
        )
        return
    print_table(
        ["AGENT", "MOUNT POINT", "KIND", "PID", "SINCE"],
        [[r.agent, r.mountpoint, r.kind, r.pid or "-", show_time(r.started_at)] for r in records],
    )
