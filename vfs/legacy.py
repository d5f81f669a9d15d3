"""Import a legacy agent sessions directory into an agent's stores.

The directory holds ``sessions.json`` (session key -> entry with at least
``sessionId`` and ``updatedAt`` in epoch ms) and one ``<sessionId>.jsonl``
transcript per session: a header line ``{"type": "session", ...}`` and then one
entry per line (``{"type", "id", "parentId", "timestamp", ...}``).

The rules, each tested:

* merge-safe: a session row newer than the file's entry is kept, and so is one
  the API wrote after an import (by revision, not by clock); transcript events
  already present are kept; an import never moves the head of a session the
  API appended to; nothing existing is deleted;
* idempotent: a second run imports nothing new and says so;
* lossless: entries and lines are stored as the JSON values they are, header
  included, and export back to equal JSON;
* source-preserving: a file is moved to ``<agent dir>/archive/`` only when
  every one of its lines is in the database and its bytes are unchanged; a
  file that cannot be read or parsed in full, or that gives one id twice with
  different content, stays where it is, byte for byte, and fails every run;
* streamed: a transcript is read a line at a time, so memory does not grow
  with its size (``sessions.json`` is one JSON value and is read whole);
* audited: every run is recorded with per-file size, xxh3 hash, status,
  counts; each file's row is committed when the file is done, and a run whose
  process died is marked ``interrupted`` by the next one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from vfs.backends import steps
from vfs.state.audit import MigrationAudit
from vfs.stores.transcripts import MAX_LISTED, ImportedEntry
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


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[BinaryIO]:
    """The file opened for reading; a FIFO, device, directory or symlink is refused unopened."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(21, "not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(21, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as stream:
            yield stream
    finally:
        os.close(fd)


def read_source(path: Path) -> bytes:
    """The file's bytes, read whole (``sessions.json`` is one JSON value)."""
    with open_source(path) as stream:
        return stream.read()


def file_digest(path: Path) -> tuple[int, str]:
    """Size and xxh3-128 hex of the file's bytes, read in blocks."""
    hasher = xxhash.xxh3_128()
    size = 0
    with open_source(path) as stream:
        while block := stream.read(1 << 20):
            hasher.update(block)
            size += len(block)
    return size, hasher.hexdigest()


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


class TranscriptReader:
    """Reads a transcript line by line, hashing the bytes as they go by.

    Complete, valid lines become entries; anything else is a problem, never a
    guess. Only one line is held at a time, so memory does not grow with the
    file. ``size``, ``hexdigest()`` and ``problems`` are final once
    :meth:`entries` is exhausted.
    """

    def __init__(
        self, stream: BinaryIO, stem: str, progress: Callable[[int], None] | None = None
    ) -> None:
        self._lines = enumerate(stream, 1)
        self._hasher = xxhash.xxh3_128()
        self._progress = progress
        self._unreported = 0
        self.size = 0
        self.problems: list[str] = []  # the first MAX_LISTED
        self.problem_count = 0
        self.header: Any = None
        self.session_id = stem
        self._first: ImportedEntry | None = None
        # The header is line 1 if that is a session line; its id names the session.
        first = self._next()
        if first is not None:
            number, raw, value = first
            if number == 1 and value.get("type") == "session":
                self.header = value
                if isinstance(value.get("id"), str) and value["id"]:
                    self.session_id = value["id"]
            else:
                self._first = _entry(number, raw, value)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def entries(self) -> Iterator[ImportedEntry]:
        if self._first is not None:
            yield self._first
        while (item := self._next()) is not None:
            yield _entry(*item)
        self._report_progress(0, flush=True)

    def _problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def _report_progress(self, size: int, *, flush: bool = False) -> None:
        self._unreported += size
        if (
            self._progress is not None
            and self._unreported
            and (flush or self._unreported >= 1 << 20)
        ):
            self._progress(self._unreported)
            self._unreported = 0

    def _next(self) -> tuple[int, bytes, dict[str, Any]] | None:
        """The next valid line as (number, bytes, object); problems are recorded."""
        for number, raw in self._lines:
            self._hasher.update(raw)
            self.size += len(raw)
            self._report_progress(len(raw))
            terminated = raw.endswith(b"\n")
            raw = raw[:-1] if terminated else raw
            if not raw.strip():
                continue
            try:
                value = loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError:
                self._problem(f"line {number}: invalid UTF-8")
                continue
            except json.JSONDecodeError as exc:
                what = "invalid JSON" if terminated else "truncated"
                self._problem(f"line {number}: {what} ({exc.msg})")
                continue
            except (ValueError, RecursionError) as exc:
                self._problem(f"line {number}: {exc}")
                continue
            if not isinstance(value, dict):
                self._problem(f"line {number}: not a JSON object")
                continue
            return number, raw, value
        return None


def _entry(number: int, raw: bytes, value: dict[str, Any]) -> ImportedEntry:
    entry_id = value.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        # A line without an id is keyed by its place and bytes, so a rerun finds it again.
        entry_id = f"legacy-line-{number}-{xxhash.xxh3_64_hexdigest(raw)}"
    parent = value.get("parentId")
    return ImportedEntry(entry_id, parent if isinstance(parent, str) else None, value, line=number)


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


def _import_sessions(
    ws: Workspace, path: Path, result: SourceResult, progress: Callable[[int], None] | None
) -> None:
    data = read_source(path)
    result.size, result.hash = len(data), digest(data)
    if progress is not None:
        progress(len(data))
    entries, problems = parse_sessions(data)
    for problem in problems:
        result.fail(problem)
    result.skipped = len(problems)
    stored = set()
    with ws.db.write():
        for key, entry in entries.items():
            if ws.sessions.import_entry(key, entry, updated_at=updated_ms(entry)):
                stored.add(key)
    result.imported, result.kept = len(stored), len(entries) - len(stored)
    # Verified: every entry is in the database, or a row that wins over it is.
    for key, entry in entries.items():
        row = ws.sessions.get(key)
        if row is None or (key in stored and row.fields != entry):
            result.fail(f"session {key!r} did not verify")


def _import_transcript(
    ws: Workspace, path: Path, result: SourceResult, progress: Callable[[int], None] | None
) -> None:
    with open_source(path) as stream:
        reader = TranscriptReader(stream, path.name.removesuffix(TRANSCRIPT_SUFFIX), progress)
        try:
            outcome = ws.transcripts.import_entries(
                reader.session_id, reader.entries(), reader.header
            )
        finally:
            result.size, result.hash = reader.size, reader.hexdigest()
    for problem in reader.problems:
        result.fail(problem)
    for entry in outcome.first_conflicts:
        result.fail(f"line {entry.line}: event {entry.id} appears twice with different content")
    unlisted = reader.problem_count - len(reader.problems)
    unlisted += outcome.conflicts - len(outcome.first_conflicts)
    if unlisted:
        result.fail(f"{unlisted} more lines not stored")
    result.skipped = reader.problem_count + outcome.conflicts
    result.imported, result.kept = outcome.added, outcome.kept
    if reader.header is not None and ws.transcripts.header(reader.session_id) is None:
        result.fail("header did not verify")


def _archive(path: Path, archive_dir: Path, result: SourceResult) -> Path:
    """Move ``path`` into ``archive_dir``, only if its bytes are still the ones imported."""
    if file_digest(path) != (result.size, result.hash):
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

    ``progress`` is called with byte counts as the files are read; they add
    up to the files' sizes.
    """
    root = Path(source_dir).absolute()
    report = MigrationReport(ws.agent, str(root), dry_run, keep_sources)
    sources = find_sources(root)
    audit = None if dry_run else MigrationAudit(ws.registry.db)
    if audit is not None:
        report.run_id = audit.start(ws.agent, str(root), keep_sources=keep_sources)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    archive_dir = ws.directory / "archive" / f"{stamp}-run{report.run_id}"
    run = _Run(ws, report, progress, audit, None if keep_sources or dry_run else archive_dir)
    try:
        if dry_run:
            with ws.db.write():
                run.all(sources)
                raise _Rollback
        else:
            run.all(sources)
    except _Rollback:
        pass
    finally:
        if audit is not None and report.run_id is not None:
            audit.finish(report.run_id, report.status)
    return report


@dataclass
class _Run:
    """One import run over its sources, each audited and archived as it is done."""

    ws: Workspace
    report: MigrationReport
    progress: Callable[[int], None] | None
    audit: MigrationAudit | None
    archive_dir: Path | None  # None: leave the sources where they are

    def all(self, sources: list[tuple[Path, str]]) -> None:
        for path, kind in sources:
            self.one(path, kind)
            # The source's rows, audit and archive move are durable here.
            steps.step()

    def one(self, path: Path, kind: str) -> None:
        result = SourceResult(str(path), kind)
        self.report.sources.append(result)
        try:
            if kind == "sessions":
                _import_sessions(self.ws, path, result, self.progress)
            else:
                _import_transcript(self.ws, path, result, self.progress)
        except (OSError, ValueError, OverflowError) as exc:
            result.fail(str(exc) if not isinstance(exc, OSError) else exc.strerror or str(exc))
        if result.status != "failed" and result.imported:
            result.status = "imported"
        self._record(result)
        if self.archive_dir is not None and result.status != "failed":
            try:
                result.archived_to = str(_archive(path, self.archive_dir, result))
            except OSError as exc:
                result.error = f"not archived: {exc.strerror or exc}"
            self._record(result)

    def _record(self, result: SourceResult) -> None:
        # Committed per source, so a run that is killed still shows what it did.
        if self.audit is not None and self.report.run_id is not None:
            self.audit.record_source(self.report.run_id, asdict(result))


def history(ws: Workspace, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The audited import runs of ``ws``'s agent, newest first."""
    return MigrationAudit(ws.registry.db).history(ws.agent, limit=limit)
