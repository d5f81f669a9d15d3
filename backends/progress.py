"""How long operations report progress: a callback the caller passes in.

``progress(done, total)`` is called as the work advances: ``done`` of ``total``
items (files, runs, bytes: each operation says which; ``total`` is None while
unknown, as in a tree walk). The library never draws anything; the CLI turns
the calls into a progress bar on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int | None], None]


def no_progress(done: int, total: int | None) -> None:
    """The callback for callers that do not watch."""
