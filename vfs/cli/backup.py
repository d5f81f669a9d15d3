"""``vfs backup``, ``vfs backups``, ``vfs restore``: backups to a directory or object storage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from vfs.backup import (
    Progress,
    backup_agent,
    backup_all,
    list_backups,
    open_destination,
    prune,
    restore_agent,
)
from vfs.backup.backup import quiet
from vfs.cli.app import main
from vfs.cli.common import (
    AGENT,
    home_of,
    human_size,
    json_option,
    plural,
    print_json,
    print_table,
    progress,
    show_time,
)


@contextlib.contextmanager
def phase_progress(label: str, enabled: bool) -> Iterator[Progress]:
    """The CLI's one progress bar (``vfs.cli.common.progress``), fed by the
    backup library's observer, which also names the phase it is in."""
    with progress(label, enabled=enabled) as bar:
        if bar is None:
            yield quiet
        else:
            yield lambda what, done, total: bar(done, total)


@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="[AGENT] DEST")
@click.option("--all", "everything", is_flag=True, help="Every agent and the control database.")
@click.option("--prune", "keep", type=int, help="Then keep only the newest N backups of each.")
@json_option
@click.pass_context
def backup(
    ctx: click.Context, targets: tuple[str, ...], everything: bool, keep: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Back up AGENT (or --all) to DEST, a directory or an fsspec URL (s3://bucket/prefix).

    Online and consistent while other processes write; content is stored once
    per destination, so a second backup of an unchanged agent writes almost nothing.
    """
    if len(targets) != (1 if everything else 2):
        raise click.UsageError("give AGENT DEST, or --all DEST")
    agent, dest = (None, targets[0]) if everything else targets
    with phase_progress("backing up", not as_json) as observe:
        if everything:
            reports = backup_all(dest, home_of(ctx), progress=observe)
        else:
            assert agent is not None
            reports = [backup_agent(agent, dest, home_of(ctx), progress=observe)]
    pruned = {}
    if keep is not None:
        destination = open_destination(dest)
        for report in reports:
            pruned[report.agent] = prune(destination, report.agent, keep)
    if as_json:
        print_json([{**r.as_dict(), "pruned": pruned.get(r.agent, ([], 0))[0]} for r in reports])
        return
    for r in reports:
        click.echo(
            f"{r.agent}: backup {r.id} ({r.mode}), {human_size(r.logical_bytes)} of content,"
            f" {human_size(r.new_bytes)} new, snapshot {human_size(r.snapshot_bytes)}; verified"
        )
        for path in r.unstable:
            click.echo(f"  left out {path}: it kept changing while it was read", err=True)
        if r.agent in pruned and pruned[r.agent][0]:
            ids, objects = pruned[r.agent]
            click.echo(
                f"  pruned {plural(len(ids), 'older backup')}"
                f" and {plural(objects, 'unused object')}"
            )


@main.command()
@click.argument("dest")
@click.argument("agent", required=False, metavar="[AGENT]", type=AGENT)
@json_option
def backups(dest: str, agent: str | None, as_json: bool) -> None:
    """List the complete backups at DEST, of AGENT or of every agent."""
    found = list_backups(open_destination(dest), agent)
    if as_json:
        print_json(
            [
                {
                    "agent": b.agent,
                    "id": b.id,
                    "mode": b.mode,
                    "created_at": b.created_at,
                    "logical_bytes": b.logical_bytes,
                    "snapshot_bytes": b.snapshot_bytes,
                }
                for b in found
            ]
        )
        return
    if not found:
        click.echo(f"no backups at {dest}")
        return
    print_table(
        ["AGENT", "BACKUP", "CREATED", "MODE", "SIZE"],
        [
            [b.agent, b.id, show_time(b.created_at), b.mode, human_size(b.logical_bytes)]
            for b in found
        ],
    )


@main.command()
@click.argument("source")
@click.argument("agent", required=False, metavar="[AGENT]", type=AGENT)
@click.option("--as", "as_name", help="Restore under this agent id instead.")
@click.option("--id", "backup_id", help="Which backup (default: the latest).")
@click.option("--force", is_flag=True, help="Replace an existing agent of that name.")
@json_option
@click.pass_context
def restore(
    ctx: click.Context, source: str, agent: str | None, as_name: str | None,
    backup_id: str | None, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Restore AGENT's latest backup from SOURCE (a backup directory or URL).

    The old agent stays untouched until the restored copy is complete and
    verified; then one atomic swap puts it in place.
    """
    with phase_progress("restoring", not as_json) as observe:
        report = restore_agent(
            source, agent, home_of(ctx), as_name=as_name, backup_id=backup_id, force=force,
            progress=observe,
        )  # fmt: skip
    if as_json:
        print_json(report.as_dict())
        return
    verb = "replaced" if report.replaced else "restored"
    click.echo(f"{verb} {report.agent} from backup {report.backup_id} ({report.mode} mode)")
