"""The settings file, ``$AGENT_VFS_HOME/config.toml``, and which mode a setting asks for.

The file::

    [defaults]
    mode = "sqlite"          # the mode new agents are created in

    [agents.alice]
    mode = "hybrid"          # the mode alice should be in

Which mode applies, highest first:

1. an explicit ``mode=`` argument (Python API, fsspec storage option);
2. the ``AGENT_VFS_MODE`` environment variable;
3. ``[agents.<id>] mode`` in the settings file;
4. ``[defaults] mode`` in the settings file (new agents only);
5. ``sqlite``.

A new agent is created in the mode that applies. ``[defaults] mode`` is meant
for new agents only: it never speaks for an agent that exists. An existing
agent's data is in one mode (the registry says which); an explicit mode or a
setting (2-3) that asks for another mode is never applied behind the user's
back, because moving data can be slow, can meet commit conflicts and is
refused while the agent is mounted. Opening the agent then fails with a message that names both
modes and the command that moves the data: ``vfs mode <agent> --apply`` for a
setting, ``vfs mode <agent> <mode>`` for an explicit mode.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from vfs.backends.blobs import DEFAULT_GRACE, BlobStore
from vfs.state.registry import Registry, check_mode

CONFIG_NAME = "config.toml"
MODE_ENV = "AGENT_VFS_MODE"
DEFAULT_MODE = "sqlite"


@dataclass(frozen=True)
class RequestedMode:
    mode: str
    source: str  # where the setting came from, for messages


class ModeMismatch(ValueError):
    """A setting asks for a mode other than the one an agent's data is in."""


def config_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / CONFIG_NAME


def load(home: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings file as a dict; empty if there is none."""
    path = config_path(home)
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None


def save(home: str | os.PathLike[str], settings: dict[str, Any]) -> None:
    """Replace the settings file atomically (comments in it are not kept)."""
    path = config_path(home)
    temp = path.with_name(f".{CONFIG_NAME}.tmp-{os.getpid()}")
    temp.write_text(tomli_w.dumps(settings), encoding="utf-8")
    os.replace(temp, path)


def _mode_in(table: Any, where: str) -> RequestedMode | None:
    if not isinstance(table, dict) or "mode" not in table:
        return None
    mode = table["mode"]
    if not isinstance(mode, str):
        raise ValueError(f"{where}: mode must be a string")
    try:
        return RequestedMode(check_mode(mode), where)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def file_mode(
    agent: str, home: str | os.PathLike[str], *, new: bool = False
) -> RequestedMode | None:
    """The mode the settings file asks for ``agent``: its own section, then (for a
    ``new`` agent only) ``[defaults]``."""
    settings = load(home)
    name = config_path(home)
    agents = settings.get("agents", {})
    own = _mode_in(agents.get(agent) if isinstance(agents, dict) else None,
                   f"{name} [agents.{agent}]")  # fmt: skip
    defaults = _mode_in(settings.get("defaults"), f"{name} [defaults]")  # validated always
    return own or (defaults if new else None)


def requested_mode(
    agent: str, home: str | os.PathLike[str], *, new: bool = False
) -> RequestedMode | None:
    """The mode the environment or the settings file asks for, or None if neither does.

    ``new``: for an agent about to be created, so ``[defaults] mode`` counts too.
    """
    env = os.environ.get(MODE_ENV)
    if env:
        try:
            return RequestedMode(check_mode(env), MODE_ENV)
        except ValueError as exc:
            raise ValueError(f"{MODE_ENV}: {exc}") from None
    return file_mode(agent, home, new=new)


def new_agent_mode(agent: str, home: str | os.PathLike[str]) -> str:
    """The mode a new ``agent`` is created in when no mode is given."""
    requested = requested_mode(agent, home, new=True)
    return DEFAULT_MODE if requested is None else requested.mode


def resolve_mode(registry: Registry, agent: str, explicit: str | None) -> str | None:
    """The mode to open (or create) ``agent`` in; ``None`` means "as its data is".

    Raises :class:`ModeMismatch` when a setting asks an existing agent for a
    mode its data is not in.
    """
    if explicit is not None:
        check_explicit_mode(registry, agent, explicit)
        return explicit
    if not registry.exists(agent):
        requested = requested_mode(agent, registry.home, new=True)
        return None if requested is None else requested.mode
    requested = requested_mode(agent, registry.home)
    if requested is None:
        return None
    current = registry.get(agent).mode
    if requested.mode != current:
        raise ModeMismatch(
            f"agent {agent}'s workspace is in {current} mode but {requested.source} asks for"
            f" {requested.mode} mode: run `vfs mode {agent} --apply` to move it,"
            f" or change the setting"
        )
    return current


def check_explicit_mode(registry: Registry, agent: str, mode: str) -> None:
    """Refuse to open an existing agent in a mode its data is not in.

    Another mode's backend would show a partial or empty tree and take writes
    that the agent's own mode never sees.
    """
    check_mode(mode)
    if not registry.exists(agent):
        return
    current = registry.get(agent).mode
    if mode != current:
        raise ModeMismatch(
            f"agent {agent}'s workspace is in {current} mode but mode={mode!r} asks for"
            f" {mode} mode: run `vfs mode {agent} {mode}` to move it,"
            f" or open it without a mode"
        )


def remember_mode(agent: str, home: str | os.PathLike[str], mode: str) -> bool:
    """Make the settings file agree with a switch to ``mode``; True if it was rewritten.

    The file is written only when it asks for another mode for this agent.
    """
    asked = file_mode(agent, home)
    if asked is None or asked.mode == mode:
        return False
    settings = load(home)
    settings.setdefault("agents", {}).setdefault(agent, {})["mode"] = mode
    save(home, settings)
    return True


# -- the blob store ----------------------------------------------------------------
#
#     [defaults]                       # or [agents.<id>], which wins
#     blob_threshold = 1048576         # files at least this long spill their chunks; 0: never
#     blob_store = "s3://bucket/blobs" # default: the agent's own <home>/agents/<id>/blobs
#     blob_grace = 3600                # seconds an unreferenced blob is kept

#: chosen by measurement (docs/benchmarks.md, "Blob store")
DEFAULT_BLOB_THRESHOLD = 1 << 20
BLOBS_DIR = "blobs"


def _blob_setting(agent: str, home: str | os.PathLike[str], key: str) -> Any:
    settings = load(home)
    agents = settings.get("agents", {})
    own = agents.get(agent) if isinstance(agents, dict) else None
    for table, where in ((own, f"[agents.{agent}]"), (settings.get("defaults"), "[defaults]")):
        if isinstance(table, dict) and key in table:
            return table[key], f"{config_path(home)} {where} {key}"
    return None, key


def _number(value: Any, where: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: must be a number of {'bytes' if kind is int else 'seconds'}")
    return kind(value)


def open_blob_store(
    agent: str, home: str | os.PathLike[str], directory: str | os.PathLike[str]
) -> BlobStore:
    """The blob store of ``agent``, whose database is in ``directory``, as the
    settings file says: ``blob_store`` (default ``directory/blobs``),
    ``blob_threshold`` and ``blob_grace``."""
    url, where = _blob_setting(agent, home, "blob_store")
    if url is None:
        url = str(Path(directory) / BLOBS_DIR)
    elif not isinstance(url, str) or not url:
        raise ValueError(f"{where}: must be a directory or a URL")
    threshold, where = _blob_setting(agent, home, "blob_threshold")
    threshold = DEFAULT_BLOB_THRESHOLD if threshold is None else _number(threshold, where, int)
    grace, where = _blob_setting(agent, home, "blob_grace")
    grace = DEFAULT_GRACE if grace is None else _number(grace, where, float)
    return BlobStore(url, agent=agent, home=str(home), threshold=threshold, grace=grace)
