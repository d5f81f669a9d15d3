"""Settings and mode switching: where state lives (``home``), the settings file
and which mode applies (``config``), and moving an agent's data between modes
(``switch``, imported on its own: it needs the engines)."""

from __future__ import annotations

from vfs.settings.home import HOME_ENV, default_home, resolve_home

__all__ = ["HOME_ENV", "default_home", "resolve_home"]
