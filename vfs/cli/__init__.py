"""The ``vfs`` command line. Each module in this package adds its commands to
:data:`vfs.cli.app.main`; they are found by listing the package."""

from __future__ import annotations

import importlib
import pkgutil

from vfs.cli.app import main

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("app", "common"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["main"]
