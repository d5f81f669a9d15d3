"""The control database (``state.sqlite``): the agent registry and settings."""

from __future__ import annotations

import difflib
import errno
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfs.backends.db import Database
from vfs.backends.names import check_agent_id

MODES = ("disk", "sqlite", "hybrid")


@dataclass(frozen=True)
class AgentRecord:
    id: str
    mode: str
    db_path: Path
    workspace: Path
    created_at: float


class NoSuchAgent(FileNotFoundError):
    """The registry has no agent of that id; the message suggests close ids."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown workspace mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode


class Registry:
    """Which agents exist under one home directory, and where their data lives."""

    def __init__(self, home: str | Path) -> None:
        # Absolute, so that every path stored or reported stays valid from any directory.
        self.home = Path(home).absolute()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = Database(self.home / "state.sqlite", "state")
        self.db.keep_reserve()

    def agent_dir(self, agent: str) -> Path:
        return self.home / "agents" / check_agent_id(agent)

    def _record(self, row: Any) -> AgentRecord:
        return AgentRecord(row[0], row[1], Path(row[2]), Path(row[3]), row[4])

    def get(self, agent: str) -> AgentRecord:
        check_agent_id(agent)
        row = self.db.one(
            "SELECT id, mode, db_path, workspace, created_at FROM agents WHERE id = ?", (agent,)
        )
        if row is None:
            raise NoSuchAgent(errno.ENOENT, self._unknown(agent), agent)
        return self._record(row)

    def _unknown(self, agent: str) -> str:
        ids = [r[0] for r in self.db.query("SELECT id FROM agents")]
        close = difflib.get_close_matches(agent, ids, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"no such agent: {agent}{hint}"

    def exists(self, agent: str) -> bool:
        check_agent_id(agent)
        return self.db.value("SELECT 1 FROM agents WHERE id = ?", (agent,)) is not None

    def list(self) -> list[AgentRecord]:
        rows = self.db.query(
            "SELECT id, mode, db_path, workspace, created_at FROM agents ORDER BY id"
        )
        return [self._record(r) for r in rows]

    def create(
        self, agent: str, mode: str, workspace: str | os.PathLike[str] | None = None
    ) -> AgentRecord:
        """Register ``agent``; ``workspace`` (an existing directory) defaults to
        ``agents/<agent>/workspace``."""
        check_mode(mode)
        directory = self.agent_dir(agent)
        ws = directory / "workspace"
        if workspace is not None:
            # A typo'd path must not become an empty tree that hides the real one.
            ws = Path(workspace).expanduser().resolve()
            if not ws.exists():
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(workspace))
            if not ws.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(workspace))
        with self.db.write():
            if self.exists(agent):
                raise FileExistsError(errno.EEXIST, f"agent already exists: {agent}", agent)
            if workspace is not None:
                self._check_workspace(ws)
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Creating an agent is the one place its database is created.
            Database(directory / "agent.sqlite", "agent").close()
            self.db.execute(
                "INSERT INTO agents (id, mode, db_path, workspace, created_at) VALUES (?, ?, ?, ?, ?)",
                (agent, mode, str(directory / "agent.sqlite"), str(ws), time.time()),
            )
        return self.get(agent)

    def _check_workspace(self, workspace: Path) -> None:
        """Refuse a workspace that overlaps the home or another agent's workspace.

        Either way one agent's files would reach another agent's database or
        files, which no path, URL or symlink may do.
        """
        taken = [("the agentvfs home", self.home.resolve())]
        taken += [(f"agent {r.id}'s workspace", r.workspace.resolve()) for r in self.list()]
        for what, other in taken:
            if workspace == other or workspace.is_relative_to(other):
                relation = "is" if workspace == other else "is inside"
            elif other.is_relative_to(workspace):
                relation = "contains"
            else:
                continue
            raise PermissionError(
                errno.EPERM, f"workspace {relation} {what} ({other})", str(workspace)
            )

    def put_record(self, agent: str, mode: str, db_path: Path, workspace: Path) -> None:
        """Record where ``agent``'s data now is, creating or replacing its row
        (a restore that swapped a new copy in); its settings are kept."""
        check_mode(mode)
        with self.db.write():
            self.db.execute(
                "INSERT INTO agents (id, mode, db_path, workspace, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET mode = excluded.mode,"
                " db_path = excluded.db_path, workspace = excluded.workspace",
                (check_agent_id(agent), mode, str(db_path), str(workspace), time.time()),
            )

    def set_mode(self, agent: str, mode: str) -> None:
        check_mode(mode)
        with self.db.write():
            self.get(agent)
            self.db.execute("UPDATE agents SET mode = ? WHERE id = ?", (mode, agent))

    def delete(self, agent: str) -> None:
        with self.db.write():
            self.get(agent)
            self.db.execute("DELETE FROM agents WHERE id = ?", (agent,))
            self.db.execute("DELETE FROM settings WHERE scope = ?", (agent,))

    # -- settings: JSON values, global (scope "") or per agent ---------------

    def get_setting(self, key: str, scope: str = "") -> Any:
        value = self.db.value(
            "SELECT value FROM settings WHERE scope = ? AND key = ?", (scope, key)
        )
        return None if value is None else json.loads(value)

    def set_setting(self, key: str, value: Any, scope: str = "") -> None:
        with self.db.write():
            self.db.execute(
                "INSERT OR REPLACE INTO settings (scope, key, value) VALUES (?, ?, ?)",
                (scope, key, json.dumps(value)),
            )
