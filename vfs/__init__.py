"""agentvfs: a virtual filesystem for AI-agent workspaces."""

from vfs.workspace import Workspace

__all__ = ["Workspace"]
__version__ = "0.1.0"
