"""CLI for the stores: ``vfs artifacts``, ``vfs cache``, ``vfs sessions``,
``vfs transcript`` and ``vfs gc``. Each command opens the agent, makes one
call and prints."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from vfs.backends.progress import no_progress
from vfs.cli.app import main
from vfs.cli.common import (
    agent_argument,
    json_option,
    open_workspace,
    plural,
    print_json,
    print_table,
    progress,
    show_size,
    show_time,
)

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS_B = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 45s, 30m, 12h, 7d")
    return float(match[1]) * _UNITS_S[match[2] or "s"]


def parse_size(text: str) -> int:
    """``1024``, ``64K``, ``500M``, ``1G`` (binary units) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", text.lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a size like 64K, 500M, 1G")
    return int(float(match[1]) * _UNITS_B[match[2]])


def _when(t: float | None) -> str:
    return show_time(t)


def _table(rows: list[list[Any]], header: list[str]) -> None:
    print_table(header, rows)


def _value(value: Any) -> str:
    """One field of a record as a person reads it: JSON for data, text for text."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


# -- artifacts ------------------------------------------------------------------------


@main.group()
def artifacts() -> None:
    """Tool-call and run artifacts."""


@artifacts.command("ls")
@agent_argument()
@click.option("--tool", help="Only runs of this tool.")
@click.option("--session", "session_key", help="Only runs of this session key.")
@click.option("--status", type=click.Choice(["pending", "ok", "error"]))
@click.option("--since", help="Only runs started within this long (e.g. 2h, 7d).")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@click.pass_context
def artifacts_ls(
    ctx: click.Context,
    agent: str,
    tool: str | None,
    session_key: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    with open_workspace(ctx, agent) as ws:
        runs = ws.artifacts.list(
            tool=tool,
            session_key=session_key,
            status=status,
            since=None if since is None else time.time() - parse_duration(since),
            limit=limit,
        )
    if as_json:
        print_json([r.as_dict() for r in runs])
        return
    _table(
        [
            [
                r.id,
                r.tool,
                r.status,
                _when(r.started_at),
                None if r.duration is None else f"{r.duration:.3f}s",
                r.session_key,
            ]
            for r in runs
        ],
        ["RUN", "TOOL", "STATUS", "STARTED", "DURATION", "SESSION"],
    )


@artifacts.command("show")
@agent_argument()
@click.argument("run_id")
@json_option
@click.pass_context
def artifacts_show(ctx: click.Context, agent: str, run_id: str, as_json: bool) -> None:
    """Show one run and its outputs."""
    with open_workspace(ctx, agent) as ws:
        run = ws.artifacts.get(run_id)
        outputs = ws.artifacts.outputs(run_id)
    if as_json:
        print_json({**run.as_dict(), "outputs": [o.as_dict() for o in outputs]})
        return
    for name, value in run.as_dict().items():
        if name.endswith("_at") and isinstance(value, int | float):
            value = show_time(value)
        elif name == "duration" and isinstance(value, int | float):
            value = f"{value:.3f}s"
        click.echo(f"{name}: {_value(value)}")
    if not outputs:
        click.echo("outputs: none")
        return
    click.echo("outputs:")
    _table(
        [[o.name, show_size(o.size), o.digest, o.source] for o in outputs],
        ["NAME", "SIZE", "DIGEST", "SOURCE"],
    )


@artifacts.command("get")
@agent_argument()
@click.argument("run_id")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.pass_context
def artifacts_get(
    ctx: click.Context, agent: str, run_id: str, name: str, output: Path | None
) -> None:
    """Write one output of a run to stdout (or a file)."""
    with open_workspace(ctx, agent) as ws, ws.artifacts.open(run_id, name) as stream:
        if output is None:
            shutil.copyfileobj(stream, sys.stdout.buffer, 1 << 20)
        else:
            with output.open("wb") as target:
                shutil.copyfileobj(stream, target, 1 << 20)


# -- caches -----------------------------------------------------------------------------


@main.group()
def cache() -> None:
    """Scoped caches (agent, session:<key>, run:<id>, tool:<name>)."""


@cache.command("ls")
@agent_argument()
@click.option("--scope", help="Only this scope.")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@click.pass_context
def cache_ls(ctx: click.Context, agent: str, scope: str | None, limit: int, as_json: bool) -> None:
    """List live entries, most recently used first."""
    with open_workspace(ctx, agent) as ws:
        entries = ws.caches.entries(scope, limit=limit)
    if as_json:
        print_json([e.as_dict() for e in entries])
        return
    _table(
        [
            [e.scope, e.key, e.kind, show_size(e.size), _when(e.expires_at), _when(e.accessed_at)]
            for e in entries
        ],
        ["SCOPE", "KEY", "KIND", "SIZE", "EXPIRES", "USED"],
    )


@cache.command("clear")
@agent_argument()
@click.argument("scope", required=False)
@click.option("--all", "everything", is_flag=True, help="Clear every scope.")
@json_option
@click.pass_context
def cache_clear(
    ctx: click.Context, agent: str, scope: str | None, everything: bool, as_json: bool
) -> None:
    """Remove the entries of SCOPE (or of every scope with --all)."""
    if (scope is None) == (not everything):
        raise click.UsageError("give a SCOPE or --all")
    with open_workspace(ctx, agent) as ws:
        removed = ws.caches.clear(None if everything else scope)
    if as_json:
        print_json({"removed": removed})
    else:
        click.echo(f"removed {plural(removed, 'entry', 'entries')}")


@cache.command("stats")
@agent_argument()
@click.option("--budget", help="Set the size budget first (e.g. 256M).")
@json_option
@click.pass_context
def cache_stats(ctx: click.Context, agent: str, budget: str | None, as_json: bool) -> None:
    """Hits, misses, evictions, expirations, size and budget."""
    with open_workspace(ctx, agent) as ws:
        if budget is not None:
            ws.caches.set_budget(parse_size(budget))
        stats = ws.caches.stats()
    if as_json:
        print_json(stats)
        return
    for name, value in stats.items():
        click.echo(f"{name}: {show_size(value) if name in ('bytes', 'budget') else value}")


# -- sessions -----------------------------------------------------------------------------


@main.group()
def sessions() -> None:
    """Sessions: one JSON object per session key."""


@sessions.command("ls")
@agent_argument()
@click.option("--prefix", help="Only keys starting with this.")
@click.option("--since", help="Only sessions updated within this long (e.g. 2h, 7d).")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@click.pass_context
def sessions_ls(
    ctx: click.Context,
    agent: str,
    prefix: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List sessions, most recently updated first."""
    after = None if since is None else int((time.time() - parse_duration(since)) * 1000)
    with open_workspace(ctx, agent) as ws:
        found = ws.sessions.list(prefix=prefix, updated_after=after, limit=limit)
    if as_json:
        print_json([s.as_dict() for s in found])
        return
    _table(
        [[s.key, s.session_id, _when(s.updated_at / 1000), len(s.fields)] for s in found],
        ["KEY", "SESSION ID", "UPDATED", "FIELDS"],
    )


@sessions.command("show")
@agent_argument()
@click.argument("key")
@json_option
@click.pass_context
def sessions_show(ctx: click.Context, agent: str, key: str, as_json: bool) -> None:
    """Show one session's fields."""
    with open_workspace(ctx, agent) as ws:
        found = ws.sessions.get(key)
    if found is None:
        raise click.ClickException(f"no such session: {key}")
    if as_json:
        print_json(found.as_dict())
        return
    click.echo(f"key: {found.key}\nupdated_at: {_when(found.updated_at / 1000)}")
    print_json(found.fields)


# -- transcripts ------------------------------------------------------------------------------


@main.group()
def transcript() -> None:
    """Transcripts: append-only event trees per session."""


@transcript.command("show")
@agent_argument()
@click.argument("session_id")
@click.option("--branch", "leaf", help="Only the branch ending at this event id.")
@click.option("--head", is_flag=True, help="Only the branch ending at the head.")
@json_option
@click.pass_context
def transcript_show(
    ctx: click.Context, agent: str, session_id: str, leaf: str | None, head: bool, as_json: bool
) -> None:
    """Show a session's events in append order (or one branch)."""
    with open_workspace(ctx, agent) as ws:
        if not ws.transcripts.exists(session_id):
            raise click.ClickException(f"no transcript for session {session_id}")
        if leaf is not None or head:
            events = ws.transcripts.branch(session_id, leaf)
        else:
            events = ws.transcripts.events(session_id)
    if as_json:
        print_json([e.as_dict() for e in events])
        return
    rows = []
    for e in events:
        body = e.event.get("message", e.event)
        text = body.get("content") if isinstance(body, dict) else body
        summary = (text if isinstance(text, str) else _value(text)).replace("\n", " ")
        rows.append([e.id, e.parent_id, e.type, summary[:100]])
    _table(rows, ["EVENT", "PARENT", "TYPE", "CONTENT"])


@transcript.command("export")
@agent_argument()
@click.argument("session_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.pass_context
def transcript_export(ctx: click.Context, agent: str, session_id: str, output: Path | None) -> None:
    """Export a transcript as JSONL: the header line, then every event."""
    with open_workspace(ctx, agent) as ws:
        if output is None:
            ws.transcripts.export_jsonl(session_id, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as target:
                ws.transcripts.export_jsonl(session_id, target)


# -- retention ----------------------------------------------------------------------------------


@main.command()
@agent_argument()
@click.option("--older-than", help="Remove runs started longer ago than this (e.g. 30d).")
@click.option("--keep-last", type=int, help="Keep only the newest N finished runs.")
@click.option("--max-size", help="Remove the oldest runs until outputs fit (e.g. 1G).")
@click.option("--dry-run", is_flag=True, help="Report what would be removed.")
@json_option
@click.pass_context
def gc(
    ctx: click.Context,
    agent: str,
    older_than: str | None,
    keep_last: int | None,
    max_size: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Apply artifact retention, free unreferenced chunks, drop expired cache entries."""
    with open_workspace(ctx, agent) as ws, progress("removing runs", enabled=not as_json) as bar:
        report = ws.artifacts.gc(
            older_than=None if older_than is None else parse_duration(older_than),
            keep_last=keep_last,
            max_bytes=None if max_size is None else parse_size(max_size),
            dry_run=dry_run,
            progress=bar or no_progress,
        )
        expired = 0 if dry_run else ws.caches.purge_expired()
        orphans = 0 if dry_run else ws.backend.reclaim_orphans()
    result = {
        **report.as_dict(),
        "cache_expired": expired,
        "orphans_reclaimed": orphans,
        "dry_run": dry_run,
    }
    if as_json:
        print_json(result)
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {plural(report.runs, 'run')} ({plural(report.outputs, 'output')},"
        f" {_bytes(report.output_bytes)}); {plural(report.chunks_freed, 'chunk')}"
        f" ({_bytes(report.bytes_freed)}) freed;"
        f" {plural(expired, 'expired cache entry', 'expired cache entries')} dropped;"
        f" {plural(orphans, 'abandoned partial write')} reclaimed"
    )


def _bytes(n: int) -> str:
    text = show_size(n)
    return text if not text.isdigit() else plural(n, "byte")
