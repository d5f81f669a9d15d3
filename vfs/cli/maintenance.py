"""``vfs doctor``, ``vfs vacuum``, ``vfs export``, ``vfs import``: the operator's tools."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click

from vfs.blob_gc import collect_blobs
from vfs.cli.app import main
from vfs.cli.common import (
    AGENT,
    agent_argument,
    home_of,
    human_size,
    json_option,
    open_workspace,
    plural,
    print_json,
)
from vfs.doctor import doctor as run_doctor
from vfs.export import export_tree, import_tree


@main.command()
@click.argument("agent", required=False, metavar="[AGENT]", type=AGENT)
@click.option("--fix", is_flag=True, help="Repair what can be repaired without losing data.")
@json_option
@click.pass_context
def doctor(ctx: click.Context, agent: str | None, fix: bool, as_json: bool) -> None:
    """Check AGENT (or the home and every agent) for damage; with --fix, repair it.

    Exits 0 when no problem remains, 1 otherwise. A file that lost content is
    kept, marked with the xattr user.agentvfs.damaged and listed.
    """
    report = run_doctor(home_of(ctx), agent, fix=fix)
    if as_json:
        print_json([health.as_dict() for health in report])
    else:
        checked = [h for h in report if h.agent]
        if all(h.healthy and not h.repaired for h in report):
            click.echo(f"ok: {plural(len(checked), 'agent')} checked, no problems")
        for health in report:
            name = health.agent or "home"
            for action in health.repaired:
                click.echo(f"{name}: repaired: {action}")
            for finding in health.remaining:
                hint = " (--fix repairs it)" if finding.repairable and not fix else ""
                click.echo(f"{name}: {finding.kind}: {finding.detail}{hint}")
    if any(not h.healthy for h in report):
        sys.exit(1)


@main.command()
@agent_argument()
@json_option
@click.pass_context
def vacuum(ctx: click.Context, agent: str, as_json: bool) -> None:
    """Reclaim the free space in AGENT's database, online; prints bytes before and after.

    Also deletes the blobs in AGENT's blob store that no agent using the store
    references and that are older than the grace period (``blob_grace``).
    """
    with open_workspace(ctx, agent) as ws:
        before = ws.db.file_bytes()
        ws.db.vacuum()
        after = ws.db.file_bytes()
        collections = collect_blobs(ws.registry, agent, delete=True)
    deleted = sum(c.deleted for c in collections)
    waiting = [who for c in collections for who in c.waiting_for]
    if as_json:
        print_json(
            {
                "agent": agent,
                "bytes_before": before,
                "bytes_after": after,
                "blobs_deleted": deleted,
                "blobs_wait_for": waiting,
            }
        )
    else:
        click.echo(f"{agent}: {human_size(before)} -> {human_size(after)}")
        if deleted:
            click.echo(f"{agent}: deleted {plural(deleted, 'unreferenced blob')}")
        for who in waiting:
            click.echo(f"{agent}: blobs are not collected until {who} publishes its references")


@main.command("export")
@agent_argument()
@click.argument("dest")
@json_option
@click.pass_context
def export_command(ctx: click.Context, agent: str, dest: str, as_json: bool) -> None:
    """Write AGENT's workspace tree to DEST: a directory or a .tar/.tar.gz, local or a URL.

    Modes, times, symlinks, FIFOs and devices are kept in a local directory and
    in tar files (sockets in a directory only); hybrid mode exports the merged view.
    """
    with open_workspace(ctx, agent, read_only=True) as ws:
        report = export_tree(ws, dest)
    if as_json:
        print_json(asdict(report))
    else:
        click.echo(
            f"exported {plural(report.files, 'file')} ({human_size(report.bytes)}),"
            f" {plural(report.directories, 'directory', 'directories')},"
            f" {plural(report.symlinks, 'symlink')}{_special(report.special)} to {dest}"
        )
        for path in report.skipped_sockets:
            click.echo(f"skipped socket {path}: a tar file cannot hold one")


@main.command("import")
@agent_argument()
@click.argument("source")
@click.option("--overwrite", is_flag=True, help="Replace workspace files newer than the source's.")
@json_option
@click.pass_context
def import_command(
    ctx: click.Context, agent: str, source: str, overwrite: bool, as_json: bool
) -> None:
    """Bring a directory or tar file SOURCE into AGENT's workspace, merging.

    A workspace file newer than the imported one is kept and listed, unless --overwrite.
    """
    with open_workspace(ctx, agent) as ws:
        report = import_tree(ws, source, overwrite=overwrite)
    if as_json:
        print_json(asdict(report))
        return
    click.echo(
        f"imported {plural(report.files, 'file')} ({human_size(report.bytes)}),"
        f" {plural(report.directories, 'directory', 'directories')},"
        f" {plural(report.symlinks, 'symlink')}{_special(report.special)}"
    )
    for path in report.skipped_newer:
        click.echo(f"kept {path}: the workspace copy is newer (--overwrite replaces it)")


def _special(count: int) -> str:
    """The special-file part of a transfer summary, shown only when there were some."""
    return f", {plural(count, 'special file')}" if count else ""
