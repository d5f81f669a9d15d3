"""Durable-step boundaries of resumable operations (commit, mode switches).

Each operation calls :func:`step` once a step of it is durable, so that a
crash after that point resumes from there. Observers registered with
:func:`observe` are told; the crash tests register one that kills the
process at a chosen boundary (``tests/support/crash_run.py``).
"""

from __future__ import annotations

from collections.abc import Callable

_observers: list[Callable[[], None]] = []


def observe(observer: Callable[[], None]) -> None:
    """Call ``observer`` at every step boundary from now on."""
    _observers.append(observer)


def step() -> None:
    """One durable step is done."""
    for observer in _observers:
        observer()


_blob_observers: list[Callable[[], None]] = []


def observe_blobs(observer: Callable[[], None]) -> None:
    """Call ``observer`` each time a blob is durably written, before its row commits."""
    _blob_observers.append(observer)


def blob_written() -> None:
    """A blob is in the store; the row that names it is not committed yet."""
    for observer in _blob_observers:
        observer()
