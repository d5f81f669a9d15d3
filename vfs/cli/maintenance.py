"""``vfs doctor`` and ``vfs vacuum``: the operator's checks and space reclaiming."""

from __future__ import annotations

import sys

import click

from vfs.cli.app import main
from vfs.cli.backup import human_size
from vfs.cli.common import home_of, json_option, open_workspace, print_json
from vfs.doctor import doctor as run_doctor


@main.command()
@click.argument("agent", required=False)
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
            click.echo(
                f"ok: {len(checked)} agent{'s' if len(checked) != 1 else ''} checked, no problems"
            )
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
@click.argument("agent")
@json_option
@click.pass_context
def vacuum(ctx: click.Context, agent: str, as_json: bool) -> None:
    """Reclaim the free space in AGENT's database, online; prints bytes before and after."""
    with open_workspace(ctx, agent) as ws:
        before = ws.db.file_bytes()
        ws.db.vacuum()
        after = ws.db.file_bytes()
    if as_json:
        print_json({"agent": agent, "bytes_before": before, "bytes_after": after})
    else:
        click.echo(f"{agent}: {human_size(before)} -> {human_size(after)}")
