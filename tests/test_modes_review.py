"""Opening a workspace honours the mode its data is in, and switches keep what they move."""

from __future__ import annotations

import fsspec
import pytest

from backends.registry import Registry
from vfs import Workspace
from vfs.config import ModeMismatch


def test_an_explicit_mode_other_than_the_agents_is_refused_naming_the_switch(home):
    with Workspace.create("alice", home, mode="hybrid") as ws:
        (ws.record.workspace / "lower.txt").write_text("on disk")
        ws.fs.pipe("upper.txt", b"in the overlay")
    for other in ("sqlite", "disk"):
        with pytest.raises(ModeMismatch, match=f"hybrid mode.*`vfs mode alice {other}`"):
            Workspace.open("alice", home, mode=other)
        with pytest.raises(ModeMismatch, match="in hybrid mode"):
            fsspec.filesystem(
                "agentvfs", agent="alice", home=str(home), create=True, mode=other,
                skip_instance_cache=True,
            )  # fmt: skip
    assert Registry(home).get("alice").mode == "hybrid"
    with Workspace.open("alice", home, mode="hybrid") as ws:
        assert ws.fs.cat("upper.txt") == b"in the overlay"
        assert ws.fs.cat("lower.txt") == b"on disk"


def test_an_explicit_mode_still_creates_a_new_agent_and_reopens_it(home):
    fs = fsspec.filesystem(
        "agentvfs", agent="bob", home=str(home), create=True, mode="disk",
        skip_instance_cache=True,
    )  # fmt: skip
    fs.pipe("a.txt", b"a")
    fs.workspace.close()
    with Workspace.open("bob", home, create=True, mode="disk") as ws:
        assert ws.mode == "disk" and ws.fs.cat("a.txt") == b"a"
