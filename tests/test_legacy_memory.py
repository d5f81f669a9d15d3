"""A transcript is imported as a stream: memory does not grow with its size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.helpers import run_python

# Imports one legacy directory in a fresh interpreter and prints the peak
# resident set (VmHWM, KiB) and the number of events stored.
CHILD = """
import sys
from vfs import Workspace
from vfs.legacy import import_legacy
with Workspace.open("alice", sys.argv[1], create=True) as ws:
    report = import_legacy(ws, sys.argv[2], keep_sources=True)
    assert not report.failed, report.as_dict()
    events = ws.transcripts.count("big")
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]), events)
"""


def write_transcript(path: Path, size: int) -> int:
    """A JSONL transcript of about ``size`` bytes of ~1 KiB lines; returns the line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = lines = 0
    with path.open("w") as out:
        out.write(json.dumps({"type": "session", "version": 3, "id": "big", "cwd": "/"}) + "\n")
        parent = None
        while written < size:
            entry_id = f"e{lines:09d}"
            line = json.dumps(
                {"type": "message", "id": entry_id, "parentId": parent,
                 "message": {"role": "assistant", "content": f"{lines} " + "x" * 900}}
            )  # fmt: skip
            out.write(line + "\n")
            written += len(line) + 1
            parent = entry_id
            lines += 1
    return lines


def peak_kib(tmp_path: Path, name: str, size: int) -> int:
    source = tmp_path / name / "legacy"
    lines = write_transcript(source / "big.jsonl", size)
    code = f"import sys; sys.argv[1:] = {[str(tmp_path / name / 'home'), str(source)]!r}\n"
    out = run_python(code + CHILD, timeout=600).split()
    assert int(out[1]) == lines
    return int(out[0])


def test_peak_memory_does_not_grow_with_the_transcript_size(tmp_path: Path) -> None:
    small = peak_kib(tmp_path, "small", 20 << 20)
    large = peak_kib(tmp_path, "large", 80 << 20)
    print(f"peak RSS: 20 MB file {small} KiB, 80 MB file {large} KiB", file=sys.stderr)
    # Reading the files whole would add about 60 MB (and more for parsed lines).
    assert large - small < 12 << 10, (small, large)
