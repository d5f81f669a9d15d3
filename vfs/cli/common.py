"""Helpers every CLI command module shares: options, agent names, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click

from vfs.backends.names import AGENT_ID
from vfs.backends.progress import Progress
from vfs.urls import split_target
from vfs.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


NUMERIC_COLUMNS = {"FILES", "SIZE", "DURATION", "FIELDS", "IMPORTED", "KEPT", "SKIPPED", "PID"}

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def home_of(ctx: click.Context) -> str | None:
    return ctx.find_root().obj.get("home") if ctx.find_root().obj else None


def open_workspace(ctx: click.Context, agent: str, **kwargs: Any) -> Workspace:
    return Workspace.open(agent, home_of(ctx), **kwargs)


# -- agent names --------------------------------------------------------------------


def split_agent_path(target: str) -> tuple[str, str]:
    """``agentvfs://AGENT/PATH``, ``AGENT:PATH``, ``AGENT:`` or ``AGENT`` -> ``(AGENT, PATH)``.

    A bare agent id names the root of its workspace.
    """
    try:
        return split_target(target)
    except ValueError as exc:
        if AGENT_ID.fullmatch(target):
            return target, "/"
        raise click.BadParameter(str(exc)) from None


class AgentName(click.ParamType):
    """An agent, written ``AGENT``, ``AGENT:``, ``AGENT:/`` or ``agentvfs://AGENT/``."""

    name = "agent"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not isinstance(value, str):
            return str(value)
        agent, path = split_agent_path(value)
        if path != "/":
            self.fail(f"{value!r} names a path; this command takes an agent", param, ctx)
        return agent


AGENT = AgentName()


def agent_argument(name: str = "agent") -> Callable[[F], F]:
    return click.argument(name, metavar="AGENT", type=AGENT)


# -- output -------------------------------------------------------------------------


def on_terminal(stream: Any = None) -> bool:
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def human_size(size: int) -> str:
    """``506052608`` -> ``483 MiB`` (binary units, three significant digits)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{size} B"
    return f"{value:.3g} {unit}" if value < 999.5 else f"{value:.0f} {unit}"  # no 1e+03


def show_size(size: int | None) -> str:
    """A size as a person reads it on a terminal, exact (bytes) otherwise."""
    if size is None:
        return "-"
    return human_size(size) if on_terminal() else str(size)


def show_time(seconds: float | None) -> str:
    """Every time the CLI prints: local time with its UTC offset."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).astimezone().isoformat(sep=" ", timespec="seconds")


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _console(stream: Any) -> Any:
    from rich.console import Console

    terminal = on_terminal(stream)
    # Off a terminal nothing is wrapped or cut: a script reads whole lines.
    return Console(
        file=stream,
        width=None if terminal else 1 << 16,
        no_color=not terminal,
        highlight=False,
        soft_wrap=not terminal,
    )


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns aligned, one row a line; ``None`` shows as ``-``."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD if on_terminal() else None, pad_edge=False, show_edge=False)
    for title in header:
        table.add_column(
            title,
            justify="right" if title in NUMERIC_COLUMNS else "left",
            no_wrap=not on_terminal(),
            overflow="fold",
        )
    for row in rows:
        table.add_row(*["-" if cell is None else str(cell) for cell in row])
    console = _console(sys.stdout)
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


@contextmanager
def progress(label: str, *, enabled: bool = True) -> Iterator[Progress | None]:
    """A progress bar on standard error for a long operation, only when that is a
    terminal and ``enabled`` (not for ``--json``); yields the callback to hand to
    the library, or None."""
    if not enabled or not on_terminal(sys.stderr):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
