"""Import a legacy agent sessions directory into an agent's stores.

The directory holds ``sessions.json`` (session key -> entry with at least
``sessionId`` and ``updatedAt`` in epoch ms) and one ``<sessionId>.jsonl``
transcript per session: a header line ``{"type": "session", ...}`` and then one
entry per line (``{"type", "id", "parentId", "timestamp", ...}``).

The rules, each tested:

* merge-safe: a session row newer than the file's entry is kept; transcript
  events already present are kept; nothing existing is deleted;
* idempotent: a second run imports nothing new and says so;
* lossless: entries and lines are stored as the JSON values they are, header
  included, and export back to equal JSON;
* source-preserving: a file is moved to ``<agent dir>/archive/`` only after
  its rows are verified in the database and its bytes are unchanged; a file
  that cannot be read or parsed in full stays where it is, byte for byte;
* audited: every run is recorded with per-file size, xxh3 hash, status, counts.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from vfs.state.audit import MigrationAudit
from vfs.stores.transcripts import ImportedEntry
from vfs.workspace import Workspace

SESSIONS_FILE = "sessions.json"
TRANSCRIPT_SUFFIX = ".jsonl"


@dataclass
class SourceResult:
    """What happened to one source file."""

    path: str
    kind: str  # 'sessions' or 'transcript'
    size: int | None = None
    hash: str | None = None
    status: str = "unchanged"  # 'imported', 'unchanged' or 'failed'
    imported: int = 0  # rows added or updated
    kept: int = 0  # rows already in the database, left as they were
    skipped: int = 0  # lines or entries that could not be parsed
    archived_to: str | None = None
    error: str | None = None

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.error = reason if self.error is None else f"{self.error}; {reason}"


@dataclass
class MigrationReport:
    agent: str
    source_dir: str
    dry_run: bool
    keep_sources: bool
    run_id: int | None = None
    sources: list[SourceResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status == "failed"]

    @property
    def imported(self) -> int:
        return sum(s.imported for s in self.sources)

    @property
    def status(self) -> str:
        if self.failed:
            return "failed" if len(self.failed) == len(self.sources) else "partial"
        return "ok" if self.imported else "nothing-new"

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "source_dir": self.source_dir,
            "dry_run": self.dry_run,
            "keep_sources": self.keep_sources,
            "run_id": self.run_id,
            "status": self.status,
            "imported": self.imported,
            "sources": [asdict(s) for s in self.sources],
        }


class _Rollback(Exception):
    """Ends a dry run's transaction without writing anything."""


def find_sources(source_dir: Path) -> list[tuple[Path, str]]:
    """``sessions.json`` first, then the transcripts, by name."""
    if not source_dir.is_dir():
        raise NotADirectoryError(20, "not a legacy sessions directory", str(source_dir))
    found: list[tuple[Path, str]] = []
    names = sorted(os.listdir(source_dir))
    if SESSIONS_FILE in names:
        found.append((source_dir / SESSIONS_FILE, "sessions"))
    found += [
        (source_dir / n, "transcript") for n in names if n.endswith(TRANSCRIPT_SUFFIX) and n != TRANSCRIPT_SUFFIX
    ]  # fmt: skip
    return found


def read_source(path: Path) -> bytes:
    """The file's bytes; a FIFO, device, directory or symlink is refused unopened."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(21, "not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(21, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return stream.read()
    finally:
        os.close(fd)


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; storing them would not round-trip.
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range for a JSON number here")
    return value


def loads(text: str) -> Any:
    """Strict JSON: no NaN or Infinity, no number that overflows to infinity."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)


# -- parsing ------------------------------------------------------------------------


@dataclass
class ParsedTranscript:
    session_id: str
    header: Any
    entries: list[ImportedEntry]
    problems: list[str]


def parse_transcript(data: bytes, stem: str) -> ParsedTranscript:
    """Complete, valid lines become entries; anything else is a problem, never a guess."""
    lines = data.split(b"\n")
    unterminated = lines.pop()  # b"" when the file ends with a newline
    problems: list[str] = []
    parsed: list[tuple[int, bytes, Any]] = []
    numbered = list(enumerate(lines, 1))
    if unterminated.strip():
        numbered.append((len(lines) + 1, unterminated))
    for number, raw in numbered:
        if not raw.strip():
            continue
        try:
            value = loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError:
            problems.append(f"line {number}: invalid UTF-8")
            continue
        except json.JSONDecodeError as exc:
            last = raw is unterminated
            problems.append(f"line {number}: {'truncated' if last else 'invalid JSON'} ({exc.msg})")
            continue
        except (ValueError, RecursionError) as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        parsed.append((number, raw, value))
    header = None
    if parsed and parsed[0][0] == 1 and parsed[0][2].get("type") == "session":
        header = parsed.pop(0)[2]
    session_id = header.get("id") if header is not None else None
    if not isinstance(session_id, str) or not session_id:
        session_id = stem
    entries = []
    for number, raw, value in parsed:
        entry_id = value.get("id")
        if not isinstance(entry_id, str) or not entry_id:
            # A line without an id is keyed by its place and bytes, so a rerun finds it again.
            entry_id = f"legacy-line-{number}-{xxhash.xxh3_64_hexdigest(raw)}"
        parent = value.get("parentId")
        entries.append(ImportedEntry(entry_id, parent if isinstance(parent, str) else None, value))
    return ParsedTranscript(session_id, header, entries, problems)


def parse_sessions(data: bytes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The entries of ``sessions.json`` that are JSON objects, and the problems."""
    try:
        value = loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValueError("invalid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object mapping session keys to entries")
    good = {k: v for k, v in value.items() if isinstance(v, dict)}
    problems = [f"entry {k!r}: not a JSON object" for k in value if k not in good]
    return good, problems


def updated_ms(entry: dict[str, Any]) -> int:
    """``updatedAt`` in epoch ms; an entry without one never wins over a row."""
    value = entry.get("updatedAt")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0
    # SQLite holds 64-bit integers; a value past that (or NaN) counts as missing.
    return int(value) if math.isfinite(value) and abs(value) < 2**63 else 0


# -- importing ----------------------------------------------------------------------


def _import_sessions(ws: Workspace, data: bytes, result: SourceResult) -> None:
    entries, problems = parse_sessions(data)
    for problem in problems:
        result.fail(problem)
    result.skipped = len(problems)
    with ws.db.write():
        for key, entry in entries.items():
            stamp = updated_ms(entry)
            existing = ws.sessions.get(key)
            if existing is None or existing.updated_at < stamp:
                ws.sessions.put(key, entry, updated_at=stamp)
                result.imported += 1
            else:
                result.kept += 1
    # Verified: every entry is in the database, or a row at least as new is.
    for key, entry in entries.items():
        row = ws.sessions.get(key)
        if row is None or (row.fields != entry and row.updated_at < updated_ms(entry)):
            result.fail(f"session {key!r} did not verify")


def _import_transcript(ws: Workspace, data: bytes, path: Path, result: SourceResult) -> None:
    parsed = parse_transcript(data, path.name.removesuffix(TRANSCRIPT_SUFFIX))
    for problem in parsed.problems:
        result.fail(problem)
    result.skipped = len(parsed.problems)
    transcripts = ws.transcripts
    sid = parsed.session_id
    with ws.db.write():
        before = {e.id for e in transcripts.events(sid)} if transcripts.exists(sid) else set()
        added, kept = transcripts.import_entries(sid, parsed.entries, parsed.header)
        result.imported += added
        result.kept += kept
        stored = {e.id: e.event for e in transcripts.events(sid)}
    for entry in parsed.entries:
        if entry.id not in stored:
            result.fail(f"event {entry.id} did not verify")
        elif entry.id not in before and stored[entry.id] != entry.event:
            result.fail(f"event {entry.id} appears twice with different content")
    if parsed.header is not None and transcripts.header(sid) is None:
        result.fail("header did not verify")


def _archive(path: Path, archive_dir: Path, data: bytes) -> Path:
    """Move ``path`` into ``archive_dir``, only if its bytes are still ``data``."""
    if read_source(path) != data:
        raise OSError(16, "changed while it was imported; left in place", str(path))
    archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = archive_dir / path.name
    shutil.move(str(path), str(target))
    return target


def import_legacy(
    ws: Workspace,
    source_dir: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    keep_sources: bool = False,
    progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Import ``source_dir`` into ``ws``; see the module docstring for the rules.

    ``progress`` is called with the byte size of each file once it is handled.
    """
    root = Path(source_dir).absolute()
    report = MigrationReport(ws.agent, str(root), dry_run, keep_sources)
    sources = find_sources(root)
    audit = MigrationAudit(ws.registry.db)
    if not dry_run:
        report.run_id = audit.start(ws.agent, str(root), keep_sources=keep_sources)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    archive_dir = ws.directory / "archive" / f"{stamp}-run{report.run_id}"
    try:
        if dry_run:
            with ws.db.write():
                _run_all(ws, sources, report, progress, None)
                raise _Rollback
        else:
            _run_all(ws, sources, report, progress, None if keep_sources else archive_dir)
    except _Rollback:
        pass
    finally:
        if report.run_id is not None:
            for result in report.sources:
                audit.record_source(report.run_id, asdict(result))
            audit.finish(report.run_id, report.status)
    return report


def _run_all(
    ws: Workspace,
    sources: list[tuple[Path, str]],
    report: MigrationReport,
    progress: Callable[[int], None] | None,
    archive_dir: Path | None,
) -> None:
    for path, kind in sources:
        result = SourceResult(str(path), kind)
        report.sources.append(result)
        data = b""
        try:
            data = read_source(path)
            result.size, result.hash = len(data), digest(data)
            if kind == "sessions":
                _import_sessions(ws, data, result)
            else:
                _import_transcript(ws, data, path, result)
        except (OSError, ValueError, OverflowError) as exc:
            result.fail(str(exc) if not isinstance(exc, OSError) else exc.strerror or str(exc))
        if result.status != "failed" and result.imported:
            result.status = "imported"
        if archive_dir is not None and result.status != "failed":
            try:
                result.archived_to = str(_archive(path, archive_dir, data))
            except OSError as exc:
                result.error = f"not archived: {exc.strerror or exc}"
        if progress is not None:
            progress(result.size or 0)


def history(ws: Workspace, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The audited import runs of ``ws``'s agent, newest first."""
    return MigrationAudit(ws.registry.db).history(ws.agent, limit=limit)
