"""Where agentvfs keeps its state: the home directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_ENV = "AGENT_VFS_HOME"


def default_home() -> Path:
    """``$AGENT_VFS_HOME``, else the platform's user data directory for agent-vfs."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("agent-vfs"))


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).expanduser() if home is not None else default_home()
