"""SQL schema files, the source of truth for every database agentvfs creates.

``schema/<kind>/NNNN_name.sql`` are applied in order; the number is the version
recorded in the database (``PRAGMA user_version`` and ``schema_migrations``).
"""

from __future__ import annotations

from importlib import resources


def migrations(kind: str) -> list[tuple[int, str, str]]:
    """Return ``(version, name, sql)`` for every migration of ``kind``, in order."""
    found = []
    for item in resources.files(__name__).joinpath(kind).iterdir():
        if item.name.endswith(".sql"):
            number, _, rest = item.name.partition("_")
            found.append((int(number), rest.removesuffix(".sql"), item.read_text("utf-8")))
    return sorted(found)
