"""sqlite mode: the whole workspace as rows of the agent database.

``tables`` keeps the rows (also hybrid mode's upper layer); ``backend`` applies
the POSIX rules of each operation to them; ``handle`` buffers writes of open files.
"""

from __future__ import annotations

from vfs.backends.sqlite.backend import SqliteBackend
from vfs.backends.sqlite.tables import FileTables

__all__ = ["FileTables", "SqliteBackend"]
