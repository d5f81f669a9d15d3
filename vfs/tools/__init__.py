"""The file tools a model is given, implemented once over the workspace engine.

>>> tools = FileTools(Workspace.open("alice"))
>>> tools.call("grep", {"pattern": "TODO", "glob": "*.py"})

:data:`SPECS` holds each tool's description and JSON input schema; the MCP
server (``vfs mcp``) serves exactly these.
"""

from vfs.tools.errors import ToolError
from vfs.tools.files import FileTools
from vfs.tools.specs import SPECS, ToolSpec

__all__ = ["SPECS", "FileTools", "ToolError", "ToolSpec"]
