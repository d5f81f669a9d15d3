"""``vfs mcp``: serve an agent's file tools to an MCP client over stdio."""

from __future__ import annotations

import click

from vfs.cli.app import main
from vfs.cli.common import open_workspace


@main.command("mcp")
@click.argument("agent")
@click.option("--read-only", "-r", is_flag=True, help="Refuse every tool that changes files.")
@click.pass_context
def mcp_command(ctx: click.Context, agent: str, read_only: bool) -> None:
    """Serve AGENT's file tools and files as an MCP server over stdio.

    Tools: read, write, edit, multi_edit, append, ls, glob, grep, mv, rm,
    mkdir, stat. Files are resources at agentvfs://AGENT/PATH. Needs the
    `mcp` extra (pip install 'agentvfs[mcp]').
    """
    try:
        from vfs.tools.server import serve_stdio
    except ImportError as exc:
        raise click.ClickException(
            f"the MCP server needs the mcp package: pip install 'agentvfs[mcp]' ({exc})"
        ) from None
    from vfs.tools import FileTools

    workspace = open_workspace(ctx, agent, read_only=read_only)
    try:
        serve_stdio(FileTools(workspace, read_only=read_only))
    finally:
        workspace.close()
