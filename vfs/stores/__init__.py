"""The stores on an agent's database: artifacts, caches, sessions, transcripts.

Each is a small module over the shared connection layer (``vfs.backends.db``);
content bytes go through the chunk store that files use.
"""

from vfs.stores.artifacts import Artifacts
from vfs.stores.caches import Caches
from vfs.stores.sessions import Sessions
from vfs.stores.transcripts import Transcripts

__all__ = ["Artifacts", "Caches", "Sessions", "Transcripts"]
