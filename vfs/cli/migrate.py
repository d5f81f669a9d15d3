"""``vfs migrate``: import a legacy sessions directory, and show past imports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from vfs.backends.progress import Progress
from vfs.cli.app import main
from vfs.cli.common import (
    agent_argument,
    json_option,
    open_workspace,
    plural,
    print_json,
    print_table,
    progress,
    show_time,
)
from vfs.legacy import MigrationReport, find_sources, history, import_legacy


def _summary(report: MigrationReport) -> None:
    if not report.sources:
        click.echo("nothing to import: no sessions.json or *.jsonl in the directory")
        return
    print_table(
        ["SOURCE", "STATUS", "IMPORTED", "KEPT", "SKIPPED", "NOTE"],
        [
            [
                Path(s.path).name,
                s.status,
                s.imported,
                s.kept,
                s.skipped,
                s.error or (f"archived to {s.archived_to}" if s.archived_to else ""),
            ]
            for s in report.sources
        ],
    )
    prefix = "dry run: would import" if report.dry_run else "imported"
    if report.imported == 0 and not report.failed:
        click.echo("nothing new to import: everything is already in the database")
    else:
        click.echo(
            f"{prefix} {plural(report.imported, 'row')} from {plural(len(report.sources), 'file')};"
            f" {len(report.failed)} failed (left in place)"
        )


def _history(ctx: click.Context, agent: str, as_json: bool) -> None:
    with open_workspace(ctx, agent) as ws:
        runs = history(ws)
    if as_json:
        print_json(runs)
        return
    if not runs:
        click.echo(f"no imports recorded for {agent}")
    for run in runs:
        started = show_time(run["started_at"])
        click.echo(f"run {run['id']}  {started}  {run['status']}  {run['source_dir']}")
        for s in run["sources"]:
            click.echo(
                f"  {Path(s['path']).name}  {s['status']}  size={s['size']} xxh3={s['hash']}"
                f"  imported={s['imported']} kept={s['kept']} skipped={s['skipped']}"
                + (f"  {s['error']}" if s["error"] else "")
            )


def _bytes_read(bar: Progress, sources: list[tuple[Path, str]]) -> Callable[[int], None]:
    """The import reports bytes as it reads them; the bar shows bytes of all sources."""
    total = sum(path.stat().st_size for path, _ in sources if path.is_file())
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        bar(done, total)

    return advance


@main.command()
@agent_argument()
@click.argument("source_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
@click.option("--keep-sources", is_flag=True, help="Never move source files to the archive.")
@click.option("--history", "show_history", is_flag=True, help="Show the agent's past imports.")
@json_option
@click.pass_context
def migrate(
    ctx: click.Context,
    agent: str,
    source_dir: Path | None,
    dry_run: bool,
    keep_sources: bool,
    show_history: bool,
    as_json: bool,
) -> None:
    """Import a legacy sessions directory (sessions.json, <sessionId>.jsonl) into AGENT.

    Newer rows in the database win, and so do rows written through the API
    after an import; a second run imports nothing new, and a file is archived
    under the agent's directory only when every one of its lines is in the
    database. Files that cannot be read or parsed, or that give one id twice
    with different content, stay where they are and make the command exit 1.
    """
    if show_history:
        _history(ctx, agent, as_json)
        return
    if source_dir is None:
        raise click.UsageError("SOURCE_DIR is required (or use --history)")
    # Checked before the agent is opened, so a wrong path creates nothing.
    sources = find_sources(source_dir)
    with (
        open_workspace(ctx, agent, create=not dry_run) as ws,
        progress("importing", enabled=not as_json) as bar,
    ):
        report = import_legacy(
            ws,
            source_dir,
            dry_run=dry_run,
            keep_sources=keep_sources,
            progress=None if bar is None else _bytes_read(bar, sources),
        )
    if as_json:
        print_json(report.as_dict())
    else:
        _summary(report)
    if report.failed:
        ctx.exit(1)
