"""The one connection layer: apsw connections, transactions, migrations, errors.

Every SQLite database agentvfs opens (the control database and each agent's
database) goes through :class:`Database`. It keeps one connection per thread,
opens a fresh one after ``fork``, applies the best-practice settings to each
connection, runs the numbered migrations from ``schema/`` on first open, and
turns apsw exceptions into ``OSError`` subclasses with an errno.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from vfs import schema

if TYPE_CHECKING:
    from vfs.backends.blobs import BlobStore

T = TypeVar("T")

BUSY_TIMEOUT_S = 60.0
# SQLite's default 2 MiB page cache misses on a few thousand small files; a
# miss is a system call per page. 16 MiB per connection keeps them cached.
CACHE_KIB = 16384
# WAL pages between automatic checkpoints (SQLite's default is 1,000). A
# checkpoint copies the WAL into the database and syncs both; a small-file write
# adds about 15 pages, so the default checkpoints every ~70 writes. 4,096 is
# one wal-index hash segment: readers still search a single table.
WAL_CHECKPOINT_PAGES = 4096
# Prepared statements kept per connection (apsw's default is 100): the path
# walks alone are one statement text per depth.
STATEMENT_CACHE = 512
# Disk space held back beside each database for opening and deleting on a full
# disk: a delete of some thousand chunks writes a few hundred KiB to the WAL.
RESERVE_BYTES = 512 * 1024

# apsw exception -> (errno, message). Constraint violations are FileExistsError
# because the only UNIQUE constraints a caller can hit are names that exist.
_ERRNO_OF: dict[type[apsw.Error], tuple[int, str]] = {
    apsw.ConstraintError: (errno.EEXIST, "already exists"),
    apsw.BusyError: (errno.EBUSY, "database is busy"),
    apsw.LockedError: (errno.EBUSY, "database table is locked"),
    apsw.ReadOnlyError: (errno.EROFS, "database is read-only"),
    apsw.FullError: (errno.ENOSPC, os.strerror(errno.ENOSPC)),
    apsw.CorruptError: (errno.EIO, "database is corrupt"),
    apsw.NotADBError: (errno.EIO, "file is not a database or is corrupt"),
    apsw.CantOpenError: (errno.EACCES, "cannot open database"),
    apsw.PermissionsError: (errno.EACCES, "permission denied"),
    apsw.AuthError: (errno.EACCES, "not authorized"),
    apsw.IOError: (errno.EIO, "disk I/O error"),
    apsw.TooBigError: (errno.EFBIG, "value too big"),
    apsw.NoMemError: (errno.ENOMEM, "out of memory"),
}


# The errors SQLite reports when the operating system refused a read, a write or
# an open: the system's errno says why (a WAL or -shm file that cannot grow on a
# full disk is an I/O error to SQLite, ENOSPC to the user).
_OS_ERRORS = (apsw.IOError, apsw.FullError, apsw.CantOpenError)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def os_error(
    exc: apsw.Error, path: str | os.PathLike[str] | None = None, system_errno: int = 0
) -> OSError:
    """Map an apsw exception to the ``OSError`` that callers handle.

    ``system_errno`` is the connection's last operating system errno
    (``Connection.system_errno``), when the caller has the connection.
    """
    if isinstance(exc, _OS_ERRORS) and system_errno in _NO_SPACE:
        name = None if path is None else str(path)
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
    for kind, (code, message) in _ERRNO_OF.items():
        if isinstance(exc, kind):
            detail = f"{message} ({exc})" if str(exc) else message
            return OSError(code, detail, None if path is None else str(path))
    return OSError(errno.EIO, f"database error: {exc}", None if path is None else str(path))


@contextlib.contextmanager
def translated_errors(path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Raise apsw errors inside the block as ``OSError``."""
    try:
        yield
    except apsw.Error as exc:
        raise os_error(exc, path) from exc


# What this process's writes are recorded as in change journals, unless a
# Database says otherwise: the front ends name themselves (cli, mount, fsspec).
process_writer = "python"


def name_writer(label: str) -> None:
    """Record this process's later writes as ``label`` (new Databases only)."""
    global process_writer
    process_writer = label


def create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if it does not exist (SQLite's -wal and
    -shm files copy the database file's permissions)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


# Connections inherited across fork are kept alive but never used or closed in
# the child: closing them there could checkpoint or unlink files the parent uses.
_inherited: list[apsw.Connection] = []
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class Database:
    """One SQLite file with a connection per thread.

    Parameters
    ----------
    path:
        The database file; created 0600 when ``create`` is true.
    kind:
        Which ``schema/<kind>/`` migrations apply (``"agent"`` or ``"state"``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kind: str,
        *,
        create: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.busy_timeout = busy_timeout
        #: who writes, for the change journal (``<writer>:<pid>``)
        self.writer = process_writer
        self._journaled = False
        self._local = threading.local()
        self.create = create
        #: where chunks too large for the database live (``vfs.backends.blobs``);
        #: set by whoever opens an agent database for its home and settings
        self.blobs: BlobStore | None = None
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private_file(self.path)
        else:
            self._check_exists()
        self.migrate()
        # Agent databases journal their file tables (schema/agent/0005_change_journal.sql).
        self._journaled = kind == "agent"

    def _check_exists(self) -> None:
        """Refuse a database that should exist but is gone or empty.

        SQLite would open an empty (or recreate a missing) file as a new, empty
        database, and applying the schema to it would silently replace the
        data with nothing. SQLite writes the header when it enables WAL, so a
        database this code created is never zero bytes long.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "database file is missing", str(self.path)
            ) from None
        if size == 0:
            raise OSError(errno.EIO, "database file is empty", str(self.path))

    # -- errors ------------------------------------------------------------

    def _os_error(self, exc: apsw.Error, conn: apsw.Connection | None = None) -> OSError:
        if conn is None:
            conn = getattr(self._local, "conn", None)
        system_errno = 0
        if conn is not None:
            with contextlib.suppress(apsw.Error):
                system_errno = conn.system_errno
        return os_error(exc, self.path, system_errno)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except apsw.Error as exc:
            raise self._os_error(exc) from exc

    # -- connections -----------------------------------------------------

    @property
    def conn(self) -> apsw.Connection:
        """This thread's connection, opened on first use (and again after fork)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.generation == _fork_generation:
            return conn
        if conn is not None:
            _inherited.append(conn)
        try:
            conn = self._connect()
        except OSError as exc:
            # Opening needs room for the -wal and -shm files.
            if exc.errno != errno.ENOSPC or not self.release_reserve():
                raise
            conn = self._connect()
        local.conn = conn
        local.generation = _fork_generation
        local.depth = 0
        local.after = []
        return conn

    def _connect(self) -> apsw.Connection:
        conn = None
        try:
            conn = apsw.Connection(
                str(self.path),
                flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW,
                statementcachesize=STATEMENT_CACHE,
            )
            if self.kind == "state":
                # Every command opens the control database: keeping its -wal and
                # -shm files between commands means opening it never needs new
                # disk space, so commands still run (and can delete) on a full disk.
                persist = ctypes.c_int(1)
                conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
            conn.setbusytimeout(int(self.busy_timeout * 1000))
            # Fail fast and clearly on a file that is not a database.
            conn.execute("PRAGMA schema_version").fetchall()
            if self.create and not conn.execute("PRAGMA page_count").fetchall()[0][0]:
                # Only a new, empty database can take it (and only before WAL is
                # enabled): lets a delete give pages back to the disk with
                # incremental_vacuum, which a full disk needs.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if mode != "wal":
                raise OSError(errno.EIO, f"cannot enable WAL (got {mode})", str(self.path))
            conn.execute(
                f"PRAGMA cache_size=-{CACHE_KIB}; "
                "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                "PRAGMA recursive_triggers=OFF; PRAGMA trusted_schema=OFF"
            )
            # Its own call: it returns a row, which would stop a statement list there.
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}").fetchall()
            conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
            conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
        except apsw.Error as exc:
            error = self._os_error(exc, conn)
            if conn is not None:
                conn.close()
            raise error from exc
        return conn

    # -- the space reserve ---------------------------------------------------

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def keep_reserve(self) -> None:
        """Hold :data:`RESERVE_BYTES` of disk in a file beside the database, while
        the disk has room to spare: on a full disk it is released so that
        SQLite can open the database and a delete can run (a delete writes
        pages to the WAL before it frees any)."""
        reserve = self.reserve_path
        if reserve.exists():
            return
        with contextlib.suppress(OSError):
            room = os.statvfs(self.path.parent)
            if room.f_bavail * room.f_frsize < 2 * RESERVE_BYTES:
                return  # taking the last of the space would only fail the next write
            fd = os.open(reserve, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError:
                os.unlink(reserve)
                raise
            finally:
                os.close(fd)

    def release_reserve(self) -> bool:
        """Give the reserve back to the disk; False if there was none."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def spending_reserve(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, a write that frees space (a delete); on a full disk
        release the reserve and run it once more.

        Only outside a transaction: a failed one was rolled back whole, so
        running it again is safe.
        """
        try:
            return self._freeing(operation)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or self.in_transaction or not self.release_reserve():
                raise
        result = self._freeing(operation)
        # Copying the WAL into the database empties it: the room the next writes need.
        self.checkpoint()
        self.keep_reserve()
        return result

    def _freeing(self, operation: Callable[[], T]) -> T:
        with self.write():
            result = operation()
            # The freed pages leave the database file in the same commit, so the
            # disk gets them back and a checkpoint never has to grow the file.
            self.query("PRAGMA incremental_vacuum")  # one page per step: run them all
        return result

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it; False if it could not finish."""
        with contextlib.suppress(OSError):
            busy = self.one("PRAGMA wal_checkpoint(TRUNCATE)")
            return busy is not None and busy[0] == 0
        return False

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation == _fork_generation:
            conn.close()
        self._local.conn = None

    # -- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` outermost, a SAVEPOINT when nested.

        Taking the write lock up front means the busy timeout applies: a
        deferred transaction that upgrades can fail at once with SQLITE_BUSY.
        """
        conn = self.conn
        local = self._local
        depth = local.depth
        name = f"sp{depth}"
        with self._translated():
            if depth:
                conn.execute(f"SAVEPOINT {name}")
            elif self._journaled:
                # Journal rows past this mark are this transaction's: the write lock is ours.
                # (One call for both statements: this runs on every write.)
                local.journal_mark = conn.execute(
                    "BEGIN IMMEDIATE; SELECT coalesce(max(seq), 0) FROM journal"
                ).get
            else:
                conn.execute("BEGIN IMMEDIATE")
        local.depth = depth + 1
        try:
            try:
                yield conn
            except BaseException:
                local.depth = depth
                # SQLite may already have rolled back (a full disk, an I/O error):
                # then undoing fails too, and the original error is the one to report.
                with contextlib.suppress(apsw.Error):
                    if depth:
                        conn.execute(f"ROLLBACK TO {name}; RELEASE {name}")
                    elif not conn.getautocommit():
                        conn.execute("ROLLBACK")
                raise
            local.depth = depth
            with self._translated():
                if depth:
                    conn.execute(f"RELEASE {name}")
                    return
                if self._journaled:
                    self._commit(conn, (f"{self.writer}:{os.getpid()}", local.journal_mark))
                else:
                    self._commit(conn)
        finally:
            if not depth:
                self._ended()

    def after_transaction(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this thread's outermost transaction has ended,
        committed or rolled back; at once when none is open."""
        if not self.in_transaction:
            callback()
            return
        self._local.after.append(callback)

    def _ended(self) -> None:
        after, self._local.after = self._local.after, []
        for callback in after:
            callback()

    def _commit(self, conn: apsw.Connection, stamp: tuple[str, int] | None = None) -> None:
        """COMMIT; with ``stamp`` (writer, journal mark), first stamp this
        transaction's journal rows with the writer, in the same call."""
        # COMMIT can meet SQLITE_BUSY while readers finish a checkpoint; the
        # transaction stays open then, so retrying is safe.
        deadline = time.monotonic() + self.busy_timeout
        if stamp is not None:
            try:
                conn.execute("UPDATE journal SET writer = ? WHERE seq > ?; COMMIT", stamp)
                return
            except apsw.BusyError:
                if conn.getautocommit():
                    raise  # SQLite rolled the transaction back: nothing to retry
                if time.monotonic() > deadline:
                    conn.execute("ROLLBACK")
                    raise
                time.sleep(0.01)
        while True:
            try:
                conn.execute("COMMIT")
                return
            except apsw.BusyError:
                if time.monotonic() > deadline:
                    conn.execute("ROLLBACK")
                    raise
                time.sleep(0.01)

    @contextlib.contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A read transaction: one consistent snapshot for the whole block."""
        conn = self.conn
        local = self._local
        if local.depth:
            yield conn
            return
        with self._translated():
            conn.execute("BEGIN")
        local.depth = 1
        try:
            yield conn
        finally:
            local.depth = 0
            try:
                with self._translated():
                    if not conn.getautocommit():
                        conn.execute("COMMIT")
            finally:
                self._ended()

    @property
    def in_transaction(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    # -- queries -----------------------------------------------------------

    # These run on every file operation, so they catch apsw errors inline
    # rather than through a context manager.

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> apsw.Cursor:
        try:
            return self.conn.execute(sql, params)
        except apsw.Error as exc:
            raise self._os_error(exc) from exc

    def executemany(self, sql: str, rows: Any) -> None:
        try:
            self.conn.executemany(sql, rows)
        except apsw.Error as exc:
            raise self._os_error(exc) from exc

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except apsw.Error as exc:
            raise self._os_error(exc) from exc

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The first row, or ``None``."""
        try:
            for row in self.conn.execute(sql, params):
                return row
        except apsw.Error as exc:
            raise self._os_error(exc) from exc
        return None

    def value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The first column of the first row, or ``None``."""
        try:
            for row in self.conn.execute(sql, params):
                return row[0]
        except apsw.Error as exc:
            raise self._os_error(exc) from exc
        return None

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap cache validator."""
        return int(self.value("PRAGMA data_version"))

    # -- maintenance ---------------------------------------------------------

    def integrity_check(self) -> list[str]:
        """Problems ``PRAGMA integrity_check`` and ``foreign_key_check`` report; empty if none."""
        problems = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {row}" for row in self.query("PRAGMA foreign_key_check")]
        return problems

    def backup_to(self, target: str | os.PathLike[str]) -> None:
        """Copy a consistent snapshot of the database to ``target`` while others write."""
        create_private_file(Path(target))
        with self._translated():
            dest = apsw.Connection(str(target))
            try:
                with dest.backup("main", self.conn, "main") as backup:
                    while not backup.done:
                        backup.step(1024)
            finally:
                dest.close()

    def copy_to(self, target: str | os.PathLike[str]) -> None:
        """Write a compact, consistent copy of the database to a new file ``target``.

        ``VACUUM INTO`` reads in one transaction: writers go on meanwhile (WAL),
        the copy shows the state of one moment, and unlike the backup API it
        never restarts when another connection commits.
        """
        create_private_file(Path(target))
        Path(target).unlink()  # VACUUM INTO wants to create the file itself
        with translated_errors(self.path):
            self.conn.execute("VACUUM INTO ?", (str(target),))
        os.chmod(target, 0o600)

    def vacuum(self) -> None:
        """Rebuild the database without its free pages, and fold the WAL back in.

        Waits, up to the busy timeout, for other connections' transactions to end.
        """
        with translated_errors(self.path):
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def file_bytes(self) -> int:
        """Bytes the database occupies on disk, its WAL included."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def migrate(self) -> None:
        """Apply the migrations this database has not seen, in one transaction."""
        steps = schema.migrations(self.kind)
        latest = steps[-1][0] if steps else 0
        version = self.value("PRAGMA user_version")
        if version == latest:
            return  # the common case needs no write lock
        if version == 0 and not self.create:
            # A database only its creator may fill: a schema-less file is not ours.
            raise OSError(errno.EIO, f"not an agentvfs {self.kind} database", str(self.path))
        with self.write() as conn:
            current = int(self.value("PRAGMA user_version"))
            if current > latest:
                raise OSError(
                    errno.EPROTO,
                    f"database schema {current} is newer than this agentvfs ({latest})",
                    str(self.path),
                )
            if current == latest:
                return
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            for version, name, sql in steps:
                if version > current:
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, name, time.time()),
                    )
            conn.execute(f"PRAGMA user_version={latest}")
