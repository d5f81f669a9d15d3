"""Tool-call and run artifacts: a record per run and any number of named outputs.

Output content is chunked into the agent's chunk store, so an output equal to
a workspace file (or to another output) costs no extra bytes, and attaching a
file the engine keeps as chunk rows (sqlite mode) shares them without reading them. Runs are also
readable as files under ``/.vfs/runs/<run>/<name>`` (see ``vfs.backends.runs_view``).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from vfs.backends.base import Backend
from vfs.backends.chunks import DEFAULT_CHUNK_SIZE, NOT_IN_CHECKPOINT
from vfs.backends.db import Database
from vfs.backends.names import check_name
from vfs.backends.progress import Progress, no_progress
from vfs.backends.runs_view import RunDir, RunFile
from vfs.stores.content import ChunkedContent, Content, ContentReader

STATUSES = ("pending", "ok", "error")

_RUN_COLUMNS = (
    "seq, id, session_key, tool, call_id, inputs, status, error, started_at, ended_at, duration"
)
_OUTPUT_COLUMNS = (
    "o.id, r.id, o.name, o.size, o.chunk_size, o.hash, o.media_type, o.source, o.created_at"
)


@dataclass(frozen=True)
class Output:
    """One named output of a run. ``digest`` is equal for equal content."""

    run_id: str
    name: str
    size: int
    digest: str
    media_type: str | None
    source: str | None
    created_at: float
    number: int = field(repr=False, default=0)
    chunk_size: int = field(repr=False, default=DEFAULT_CHUNK_SIZE)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "size": self.size,
            "digest": self.digest,
            "media_type": self.media_type,
            "source": self.source,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Run:
    """A recorded tool call or run."""

    id: str
    session_key: str | None
    tool: str | None
    call_id: str | None
    inputs: Any
    status: str
    error: str | None
    started_at: float
    ended_at: float | None
    duration: float | None
    number: int = field(repr=False, default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_key": self.session_key,
            "tool": self.tool,
            "call_id": self.call_id,
            "inputs": self.inputs,
            "status": self.status,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
        }


@dataclass(frozen=True)
class GcReport:
    """What a retention pass removed (or would remove, for a dry run)."""

    runs: int
    outputs: int
    output_bytes: int
    chunks_freed: int
    bytes_freed: int

    def as_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "outputs": self.outputs,
            "output_bytes": self.output_bytes,
            "chunks_freed": self.chunks_freed,
            "bytes_freed": self.bytes_freed,
        }


class _DryRun(Exception):
    pass


def new_run_id() -> str:
    """A readable, time-ordered, unique run id."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def _run(row: Any) -> Run:
    seq, run_id, session_key, tool, call_id, inputs, status, error, started, ended, duration = row
    return Run(
        run_id, session_key, tool, call_id, json.loads(inputs), status, error, started, ended,
        duration, seq,
    )  # fmt: skip


def _output(row: Any) -> Output:
    number, run_id, name, size, chunk_size, digest, media_type, source, created = row
    return Output(run_id, name, size, digest, media_type, source, created, number, chunk_size)


class RunHandle:
    """The run inside ``with artifacts.run(...) as run:``."""

    def __init__(self, store: Artifacts, run: Run) -> None:
        self.store = store
        self.id = run.id
        self.run = run

    def attach(self, name: str, data: Content, media_type: str | None = None) -> Output:
        return self.store.attach(self.id, name, data, media_type=media_type)

    def attach_file(self, name: str, path: str) -> Output:
        return self.store.attach_file(self.id, name, path)


class Artifacts:
    """The artifact store of one agent.

    Parameters
    ----------
    db:
        The agent database.
    backend:
        The workspace backend, for :meth:`attach_file` (the mode's own backend).
    """

    def __init__(self, db: Database, backend: Backend | None = None) -> None:
        self.db = db
        self.backend = backend
        self.content = ChunkedContent(db, "run_output_chunks", "output")

    # -- runs -------------------------------------------------------------------

    def start(
        self,
        tool: str | None = None,
        *,
        run_id: str | None = None,
        session_key: str | None = None,
        call_id: str | None = None,
        inputs: Any = None,
        started_at: float | None = None,
    ) -> Run:
        """Record a new pending run; ``FileExistsError`` if ``run_id`` is taken."""
        run_id = check_name(run_id) if run_id is not None else new_run_id()
        with self.db.write():
            self.db.execute(
                "INSERT INTO runs (id, session_key, tool, call_id, inputs, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    session_key,
                    tool,
                    call_id,
                    json.dumps(
                        {} if inputs is None else inputs, ensure_ascii=False, allow_nan=False
                    ),
                    time.time() if started_at is None else started_at,
                ),
            )
            return self.get(run_id)

    def finish(
        self,
        run_id: str,
        status: str = "ok",
        error: str | None = None,
        *,
        ended_at: float | None = None,
    ) -> Run:
        """Set a run's final status and end time."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}: choose one of {', '.join(STATUSES)}")
        with self.db.write():
            self.db.execute(
                "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ?",
                (status, error, time.time() if ended_at is None else ended_at, run_id),
            )
            if not self.db.conn.changes():
                raise FileNotFoundError(errno.ENOENT, f"no such run: {run_id}", run_id)
            return self.get(run_id)

    @contextlib.contextmanager
    def run(self, tool: str | None = None, **fields: Any) -> Iterator[RunHandle]:
        """Record a run around a block: ``ok`` when it ends, ``error`` if it raises."""
        handle = RunHandle(self, self.start(tool, **fields))
        try:
            yield handle
        except BaseException as exc:
            self.finish(handle.id, "error", f"{type(exc).__name__}: {exc}")
            raise
        self.finish(handle.id, "ok")

    def get(self, run_id: str) -> Run:
        row = self.db.one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise FileNotFoundError(errno.ENOENT, f"no such run: {run_id}", run_id)
        return _run(row)

    def list(
        self,
        *,
        tool: str | None = None,
        session_key: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> builtins.list[Run]:
        """Runs, newest first, filtered by tool, session, status and start time."""
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (("tool", tool), ("session_key", session_key), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at < ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(-1 if limit is None else limit)
        rows = self.db.query(
            f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY started_at DESC, seq DESC LIMIT ?",
            params,
        )
        return [_run(r) for r in rows]

    def delete(self, run_id: str) -> None:
        """Delete a run and its outputs; chunks nothing else references are freed."""
        with self.db.write():
            self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            if not self.db.conn.changes():
                raise FileNotFoundError(errno.ENOENT, f"no such run: {run_id}", run_id)

    # -- outputs ------------------------------------------------------------------

    def _seq(self, run_id: str) -> int:
        seq = self.db.value("SELECT seq FROM runs WHERE id = ?", (run_id,))
        if seq is None:
            raise FileNotFoundError(errno.ENOENT, f"no such run: {run_id}", run_id)
        return int(seq)

    def _new_output(
        self, run_id: str, name: str, chunk_size: int, media_type: str | None, source: str | None
    ) -> int:
        seq = self._seq(run_id)
        # Attaching a name again replaces the output; the old chunks are released.
        self.db.execute("DELETE FROM run_outputs WHERE run = ? AND name = ?", (seq, name))
        self.db.execute(
            "INSERT INTO run_outputs (run, name, size, chunk_size, hash, media_type, source,"
            " created_at) VALUES (?, ?, 0, ?, '', ?, ?, ?)",
            (seq, name, chunk_size, media_type, source, time.time()),
        )
        return int(self.db.conn.last_insert_rowid())

    def attach(
        self, run_id: str, name: str, data: Content, *, media_type: str | None = None
    ) -> Output:
        """Attach ``data`` (bytes, a binary stream or an iterable of bytes) as ``name``.

        The stream is read inside one write transaction.
        """
        check_name(name)
        with self.db.write():
            number = self._new_output(run_id, name, DEFAULT_CHUNK_SIZE, media_type, None)
            size, digest = self.content.write(number, data, DEFAULT_CHUNK_SIZE)
            return self._set_content(run_id, name, number, size, digest)

    def attach_file(self, run_id: str, name: str, path: str) -> Output:
        """Attach the workspace file at ``path``.

        Where the engine keeps the file as chunk rows of the agent database
        (sqlite mode), the output shares them: no bytes are copied. Otherwise
        the file is read through the backend.
        """
        check_name(name)
        if self.backend is None:
            raise OSError(errno.EINVAL, "this artifact store has no workspace backend", path)
        backend = self.backend
        with self.db.write():
            # Resolved inside the transaction: the name and its rows are one state.
            attr = backend.resolve(path)
            if not attr.is_file:
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
            shared = backend.shared_chunks(attr.ino)
            if shared is not None:
                number = self._new_output(run_id, name, shared.chunk_size, None, path)
                for ref in shared.chunks:
                    self.content.add(number, ref.idx, ref.chunk)
                return self._set_content(run_id, name, number, shared.size, shared.checksum)
        # By name, so a file another process replaces meanwhile is read old or new.
        handle, attr = backend.open_path(path)
        try:
            chunk_size = DEFAULT_CHUNK_SIZE
            stream = (handle.read(off, chunk_size) for off in range(0, attr.size, chunk_size))
            with self.db.write():
                number = self._new_output(run_id, name, chunk_size, None, path)
                size, digest = self.content.write(number, stream, chunk_size)
                return self._set_content(run_id, name, number, size, digest)
        finally:
            handle.close()

    def _set_content(self, run_id: str, name: str, number: int, size: int, digest: str) -> Output:
        self.db.execute(
            "UPDATE run_outputs SET size = ?, hash = ? WHERE id = ?", (size, digest, number)
        )
        return self.output(run_id, name)

    def outputs(self, run_id: str) -> builtins.list[Output]:
        seq = self._seq(run_id)
        rows = self.db.query(
            f"SELECT {_OUTPUT_COLUMNS} FROM run_outputs o JOIN runs r ON r.seq = o.run"
            " WHERE o.run = ? ORDER BY o.name",
            (seq,),
        )
        return [_output(r) for r in rows]

    def output(self, run_id: str, name: str) -> Output:
        row = self.db.one(
            f"SELECT {_OUTPUT_COLUMNS} FROM run_outputs o JOIN runs r ON r.seq = o.run"
            " WHERE r.id = ? AND o.name = ?",
            (run_id, name),
        )
        if row is None:
            raise FileNotFoundError(errno.ENOENT, f"no output {name!r} in run {run_id}", name)
        return _output(row)

    def read(self, run_id: str, name: str) -> bytes:
        """The whole output as bytes."""
        with self.db.read():
            out = self.output(run_id, name)
            return self.content.read(out.number, out.size, out.chunk_size, 0, out.size)

    def open(self, run_id: str, name: str) -> BinaryIO:
        """The output as a seekable binary stream that reads chunks on demand."""
        out = self.output(run_id, name)
        reader = ContentReader(self.content, out.number, out.size, out.chunk_size)
        return reader  # type: ignore[return-value]

    # -- retention ------------------------------------------------------------------

    def gc(
        self,
        *,
        older_than: float | None = None,
        keep_last: int | None = None,
        max_bytes: int | None = None,
        dry_run: bool = False,
        now: float | None = None,
        progress: Progress = no_progress,
    ) -> GcReport:
        """Delete runs by policy and free the chunks nothing references any more.

        ``older_than`` (seconds) removes runs that started before then;
        ``keep_last`` keeps only the newest N runs; ``max_bytes`` removes the
        oldest runs until their outputs fit the budget. A pending run is only
        removed by ``older_than``: it may still be receiving outputs.
        ``progress`` hears of each run removed (of all to remove).
        """
        now = time.time() if now is None else now
        try:
            with self.db.write():
                doomed: set[int] = set()
                if older_than is not None:
                    cutoff = now - older_than
                    doomed.update(
                        r[0] for r in self.db.query("SELECT seq FROM runs WHERE started_at < ?", (cutoff,))
                    )  # fmt: skip
                finished = self.db.query(
                    "SELECT r.seq, COALESCE(SUM(o.size), 0) FROM runs r"
                    " LEFT JOIN run_outputs o ON o.run = r.seq WHERE r.status != 'pending'"
                    " GROUP BY r.seq ORDER BY r.started_at DESC, r.seq DESC"
                )
                if keep_last is not None:
                    doomed.update(seq for seq, _ in finished[keep_last:])
                if max_bytes is not None:
                    total = 0
                    for seq, size in finished:
                        if seq in doomed:
                            continue
                        total += size
                        if total > max_bytes:
                            doomed.add(seq)
                report = self._delete_runs(sorted(doomed), progress)
                if dry_run:
                    raise _DryRun(report)
        except _DryRun as dry:
            return dry.args[0]  # type: ignore[no-any-return]
        return report

    def _delete_runs(self, seqs: builtins.list[int], progress: Progress = no_progress) -> GcReport:
        before = self.db.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM chunks")
        outputs, output_bytes = 0, 0
        for done, seq in enumerate(seqs, 1):
            count, size = self.db.one(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM run_outputs WHERE run = ?", (seq,)
            )
            outputs += count
            output_bytes += size
            self.db.execute("DELETE FROM runs WHERE seq = ?", (seq,))
            progress(done, len(seqs))
        # Chunks whose count reached zero are freed by the triggers; catch any
        # left at zero by an interrupted writer too.
        self.db.execute(f"DELETE FROM chunks WHERE refs <= 0 AND {NOT_IN_CHECKPOINT}")
        after = self.db.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM chunks")
        return GcReport(
            len(seqs), outputs, output_bytes, before[0] - after[0], before[1] - after[1]
        )

    def usage(self) -> dict[str, int]:
        """Run count, output count and logical output bytes."""
        runs = self.db.value("SELECT COUNT(*) FROM runs")
        outputs, size = self.db.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM run_outputs")
        return {"runs": runs, "outputs": outputs, "output_bytes": size}

    # -- the /.vfs/runs tree (vfs.backends.runs_view.RunFiles) ------------------------------

    def run_dirs(self) -> builtins.list[RunDir]:
        rows = self.db.query(
            "SELECT seq, id, COALESCE(ended_at, started_at) FROM runs ORDER BY seq"
        )
        return [RunDir(seq, run_id, int(t * 1e9)) for seq, run_id, t in rows]

    def run_dir(self, *, name: str | None = None, number: int | None = None) -> RunDir | None:
        row = self.db.one(
            "SELECT seq, id, COALESCE(ended_at, started_at) FROM runs WHERE id = ? OR seq = ?",
            (name, number),
        )
        return None if row is None else RunDir(row[0], row[1], int(row[2] * 1e9))

    def run_files(self, run_number: int) -> builtins.list[RunFile]:
        rows = self.db.query(
            "SELECT id, name, size, created_at, hash FROM run_outputs WHERE run = ? ORDER BY id",
            (run_number,),
        )
        return [RunFile(i, name, size, int(t * 1e9), h) for i, name, size, t, h in rows]

    def run_file(
        self, *, run_number: int | None = None, name: str | None = None, number: int | None = None
    ) -> RunFile | None:
        if number is not None:
            row = self.db.one(
                "SELECT id, name, size, created_at, hash FROM run_outputs WHERE id = ?", (number,)
            )
        else:
            row = self.db.one(
                "SELECT id, name, size, created_at, hash FROM run_outputs WHERE run = ? AND name = ?",
                (run_number, name),
            )
        return None if row is None else RunFile(row[0], row[1], row[2], int(row[3] * 1e9), row[4])

    def read_run_file(self, number: int, offset: int, size: int) -> bytes:
        with self.db.read():
            row = self.db.one("SELECT size, chunk_size FROM run_outputs WHERE id = ?", (number,))
            if row is None:
                raise FileNotFoundError(
                    errno.ENOENT, "No such file or directory", f"output {number}"
                )
            return self.content.read(number, row[0], row[1], offset, size)
