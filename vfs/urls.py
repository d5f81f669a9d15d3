"""How a file in an agent's workspace is named: ``agentvfs://AGENT/PATH`` or ``AGENT:PATH``.

The fsspec filesystem and the CLI parse names here and nowhere else, so that
both read the agent out of a name the same way.
"""

from __future__ import annotations

PROTOCOL = "agentvfs"
URL_PREFIX = f"{PROTOCOL}://"


def split_url(url: str) -> tuple[str | None, str]:
    """``agentvfs://AGENT/PATH`` -> ``(AGENT, "/PATH")``.

    A name without an agent (``agentvfs:///PATH``, ``agentvfs:PATH`` or a plain
    path) gives ``(None, PATH)``. The path is made absolute, nothing more.
    """
    agent: str | None = None
    if url.startswith(URL_PREFIX):
        agent, _, url = url[len(URL_PREFIX) :].partition("/")
    elif url.startswith(f"{PROTOCOL}:"):
        url = url[len(PROTOCOL) + 1 :]
    return agent or None, "/" + url.lstrip("/")


def split_target(target: str) -> tuple[str, str]:
    """The CLI's remote names: ``agentvfs://AGENT/PATH`` or ``AGENT:PATH`` -> ``(AGENT, PATH)``.

    Raises ``ValueError`` for anything that does not name an agent.
    """
    if target.startswith(f"{PROTOCOL}:"):
        agent, path = split_url(target)
    elif ":" in target and not target.startswith("/"):
        agent, _, path = target.partition(":")
        path = "/" + path.lstrip("/")
    else:
        agent = None
    if not agent:
        raise ValueError(f"{target!r} is not AGENT:PATH or {URL_PREFIX}AGENT/PATH")
    return agent, path


def normalize(path: str) -> str:
    """A workspace path as the filesystem stores names: absolute, no trailing slash."""
    path = "/" + path.lstrip("/")
    return path.rstrip("/") or "/"


def make_url(agent: str, path: str) -> str:
    """The URL of ``path`` (a workspace path) in ``agent``'s workspace."""
    return f"{URL_PREFIX}{agent}{normalize(path)}"
