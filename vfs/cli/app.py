"""The ``vfs`` command group and the one place library errors become CLI errors."""

from __future__ import annotations

import errno
import re
import sys
import warnings
from typing import Any

import click

from vfs.backends.db import name_writer


def describe(exc: BaseException) -> str:
    """One line for an error a user can act on."""
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        if exc.filename and not _names(text, str(exc.filename)):
            text = f"{exc.filename}: {text}"
        if exc.errno and not exc.strerror:
            text = f"{text} ({errno.errorcode.get(exc.errno, exc.errno)})"
        return text
    return str(exc) or type(exc).__name__


def _names(text: str, name: str) -> bool:
    """``text`` already names ``name`` as a word of its own (said once is enough)."""
    return re.search(rf"(?<![\w/.-]){re.escape(name)}(?![\w/-]|\.\w)", text) is not None


class Group(click.Group):
    """Turns OSError and ValueError from the library into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (OSError, ValueError, OverflowError) as exc:
            if isinstance(exc, BrokenPipeError):
                sys.exit(1)
            raise click.ClickException(describe(exc)) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="AGENT_VFS_HOME",
    help="State directory (default: $AGENT_VFS_HOME, else the user data dir).",
)
@click.version_option(package_name="agentvfs")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """agentvfs: virtual filesystems for AI-agent workspaces."""
    ctx.obj = {"home": home}
    name_writer("cli")
    warnings.showwarning = _warning


def _warning(message: Warning | str, *_: object, **__: object) -> None:
    """Library warnings as one line on stderr, as errors are."""
    click.echo(f"warning: {message}", err=True)
