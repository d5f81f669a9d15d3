"""Helpers every CLI command module shares: options, agent paths, output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vfs.urls import split_target
from vfs.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def home_of(ctx: click.Context) -> str | None:
    return ctx.find_root().obj.get("home") if ctx.find_root().obj else None


def open_workspace(ctx: click.Context, agent: str, **kwargs: Any) -> Workspace:
    return Workspace.open(agent, home_of(ctx), **kwargs)


def split_agent_path(target: str) -> tuple[str, str]:
    """``agentvfs://AGENT/PATH`` or ``AGENT:PATH`` -> ``(AGENT, PATH)``."""
    try:
        return split_target(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def is_agent_path(target: str) -> bool:
    try:
        split_target(target)
    except ValueError:
        return False
    return True


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))
