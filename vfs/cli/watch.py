"""``vfs watch``: print change events of a workspace as they happen."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click

from vfs.cli.app import main
from vfs.cli.common import agent_argument, open_workspace


@main.command()
@agent_argument()
@click.argument("path", default="/")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@click.option("--count", type=int, help="Exit after this many events.")
@click.option("--timeout", type=float, help="Exit after this many seconds.")
@click.pass_context
def watch(
    ctx: click.Context, agent: str, path: str, as_json: bool, count: int | None,
    timeout: float | None,
) -> None:  # fmt: skip
    """Print changes under PATH of AGENT's workspace, from any writer, as they happen.

    Each line: the time (UTC), what happened (created, modified, deleted,
    moved), the path, and who wrote it where the mode records it.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    with open_workspace(ctx, agent, read_only=True) as ws, ws.watch(path) as watcher:
        while deadline is None or time.monotonic() < deadline:
            for event in watcher.poll():
                if as_json:
                    click.echo(json.dumps(event.as_dict()), nl=True)
                else:
                    when = datetime.fromtimestamp(event.at_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[
                        :-3
                    ]
                    where = f"{event.old_path} -> {event.path}" if event.old_path else event.path
                    who = f"  ({event.writer})" if event.writer else ""
                    click.echo(f"{when} UTC  {event.kind:<8}  {where}{who}")
                seen += 1
                if count is not None and seen >= count:
                    return
            time.sleep(watcher.interval)
