"""The database itself: engine, transactions, dialect differences, migrations.

``Database("sqlite:///textwire.db")`` (WAL mode, one writer at a time) or
``Database("postgresql://user@host/db")`` (psycopg 3). Everything else in
``textwire.storage`` runs its statements through one of these.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from textwire.errors import StorageError

__all__ = ["Database", "Prepared", "normalize_database_url"]

logger = logging.getLogger("textwire.storage")

# A read-only transaction on SQLite starts with a plain (deferred) BEGIN.
_READ = "textwire_read"

T = TypeVar("T")


class _DirectConnections:
    """:meth:`Database.raw_write`'s own connections, made on first use (a
    worker process, which never records webhooks, opens none), each with its
    cursor, reused last in first out, at most ``keep`` kept idle: outside
    SQLAlchemy's pool, whose checkout, pre-ping and reset on return cost more
    than the webhook's statement itself.

    Args:
        factory: an engine that only makes them (``NullPool``; each is
            detached from it at once), with the dialect's connect settings.
    """

    def __init__(
        self, factory: Engine, dbapi_error: type[Exception], keep: int = 8
    ) -> None:
        self._factory = factory
        self._error = dbapi_error
        self._keep = keep
        self._idle: list[tuple[Any, Any]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def run(self, work: Callable[[Any], T]) -> T:
        for attempt in (1, 2):
            conn, cursor = self._take()
            try:
                result = work(cursor)
            except self._error as exc:
                dead = self._factory.dialect.is_disconnect(
                    exc,  # type: ignore[arg-type]  # (the DBAPI's Error: one class per driver)
                    conn,
                    cursor,
                )
                _close(conn)
                if dead and attempt == 1:
                    self.close_idle()  # a restart: the others are as dead
                    continue
                raise StorageError(f"database error: {exc.__class__.__name__}") from exc
            except BaseException:
                _close(conn)  # in an unknown state
                raise
            with self._lock:
                if len(self._idle) < self._keep:
                    self._idle.append((conn, cursor))
                    conn = None
            if conn is not None:
                _close(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self) -> tuple[Any, Any]:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child (gunicorn): those belong to the parent.
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            proxied = self._factory.raw_connection()
        except (SQLAlchemyError, self._error) as exc:
            # (raw_connection() hands the driver's own errors through)
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc
        conn: Any = proxied.driver_connection
        proxied.detach()  # the driver's connection is this object's alone now
        return conn, conn.cursor()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _cursor in idle:
            _close(conn)


def _direct_factory(url: Any) -> Engine:
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url, isolation_level="AUTOCOMMIT", poolclass=NullPool, hide_parameters=True
        )
    factory = create_engine(url, poolclass=NullPool, hide_parameters=True)
    event.listen(factory, "connect", _sqlite_on_connect)
    return factory


def _immediately(cursor: Any, work: Callable[[Any], T]) -> T:
    """``work`` in a SQLite write transaction (a failure closes the
    connection, which rolls it back)."""
    cursor.execute("BEGIN IMMEDIATE")  # as _sqlite_on_begin does
    result = work(cursor)
    cursor.execute("COMMIT")
    return result


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """One database: transactions, the dialect's INSERT, and its migrations.

    Args:
        url: a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://…``).
        engine: an engine to use instead of making one (tests).
    """

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = normalize_database_url(url)
        self.engine = engine or _make_engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StorageError(f"unsupported database {self.dialect!r}")
        self._write_lock = _SqliteWriteLock.for_url(self.url)
        self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._head: str | None = None
        self._direct: _DirectConnections | None = None
        self._direct_lock = threading.Lock()

    def __repr__(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._direct is not None:
            self._direct.close_idle()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on error.

        Raises:
            StorageError: the database failed (the cause is chained).
        """
        try:
            with self._write_lock, self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc

    def raw_write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` on the driver's own connection and cursor, for
        :class:`Prepared` statements on the hottest path (the webhook's
        insert): no SQLAlchemy connection, transaction or event in between.

        SQLite: inside a ``BEGIN IMMEDIATE`` transaction (under the write
        lock), committed when ``work`` returns. PostgreSQL: ``work`` runs
        exactly one statement, in autocommit, so that statement is the whole
        transaction (one round trip: no BEGIN, no COMMIT, no pre-ping). Both
        on connections of this method's own (:class:`_DirectConnections`).
        After a server restart those kept idle are dead and the first use
        finds out: they are all closed and ``work`` runs once more on a new
        connection, so it must be safe to run twice (the webhook's insert is:
        a second run finds its MessageSid).

        Raises:
            StorageError: the database failed (the connection is discarded).
        """
        direct = self._direct or self._make_direct()
        if self.dialect == "postgresql":
            return direct.run(work)
        with self._write_lock:
            return direct.run(lambda cursor: _immediately(cursor, work))

    def _make_direct(self) -> _DirectConnections:
        # Once, by the first webhook (later ones never take this lock).
        with self._direct_lock:
            if self._direct is None:
                self._direct = _DirectConnections(
                    _direct_factory(self.engine.url), self._dbapi_error
                )
            return self._direct

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (on SQLite it never waits for writers)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_READ: True})
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (with ``on_conflict_do_…`` and ``returning``)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- migrations ------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision``."""
        from alembic import command

        command.upgrade(self._alembic_config(), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        if self._head is None:
            from alembic.script import ScriptDirectory

            script = ScriptDirectory.from_config(self._alembic_config())
            self._head = script.get_current_head()
        return self._head

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        location = resources.files("textwire.storage") / "migrations"
        cfg.set_main_option("script_location", str(location))
        cfg.attributes["engine"] = self.engine
        return cfg

    def check(self) -> None:
        """Raise ``StorageError`` unless the database answers and is migrated."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database unreachable: {exc.__class__.__name__}"
            ) from exc
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise StorageError(
                f"database at revision {current or 'none'}, code expects {head}: "
                "run `textwire db upgrade`"
            )


class Prepared:
    """A Core statement compiled once, run on the driver's own cursor.

    For the webhook's insert, which every inbound message pays for: the
    statement is SQLAlchemy's (its SQL and each value's conversion come from
    the compiled statement and the column types), but each execution skips
    the per-call compile-cache lookup, parameter construction and result
    wrapping — about half the time the insert takes. Use it inside a
    :meth:`Database.begin` transaction or :meth:`Database.raw_write`.
    """

    def __init__(self, statement: Any, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names: list[str] = (
            list(compiled.positiontup or ())
            if self.positional
            else list(compiled.binds)
        )
        self._unique = list(dict.fromkeys(self.names))
        self._fixed: dict[str, Any] = {}
        self._convert: dict[str, Any] = {}
        for name in self.names:
            bind = compiled.binds[name]
            if not bind.required:  # a literal in the statement (None too)
                self._fixed[name] = bind.effective_value
            self._convert[name] = bind.type.dialect_impl(dialect).bind_processor(
                dialect
            )
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def parameters(self, values: dict[str, Any]) -> Any:
        """The driver's parameters for ``values`` (tuple or dict, converted)."""
        converted: dict[str, Any] = {}
        for name in self._unique:
            value = values[name] if name in values else self._fixed[name]
            convert = self._convert[name]
            converted[name] = convert(value) if convert is not None else value
        if self.positional:
            return tuple([converted[name] for name in self.names])
        return converted

    def fetch_first(self, cursor: Any, values: dict[str, Any]) -> Any:
        """Execute on a driver cursor (:meth:`Database.raw_write`); the first
        row's first column, or ``None``."""
        cursor.execute(self.sql, self.parameters(values))
        row = cursor.fetchone()
        return row[0] if row else None

    def first(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Execute in ``conn``'s transaction; the first row's first column
        (``None`` when no row came back).

        Raises:
            StorageError: the driver failed (the connection is discarded).
        """
        row, _count = self._execute(conn, values, fetch=True)
        return row[0] if row else None

    def run(self, conn: Connection, values: dict[str, Any]) -> int:
        """Execute in ``conn``'s transaction; the number of rows it changed."""
        _row, count = self._execute(conn, values, fetch=False)
        return count

    def _execute(
        self, conn: Connection, values: dict[str, Any], *, fetch: bool
    ) -> tuple[Any, int]:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(self.sql, self.parameters(values))
            row = cursor.fetchone() if fetch else None
            count = int(cursor.rowcount)
        except self._dbapi_error as exc:
            # SQLAlchemy never saw this error: drop the connection ourselves
            # (it may be a dead one after a server restart).
            conn.invalidate()
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc
        finally:
            cursor.close()
        return row, count


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    # hide_parameters: an error dump never prints bound values (numbers, bodies).
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StorageError(
                "an in-memory SQLite database cannot be shared by the web server "
                "and the send worker; use a file, e.g. sqlite:///textwire.db"
            )
        engine = create_engine(url, pool_size=8, max_overflow=8, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # A steady pool: connections opened and dropped for each burst of
        # sends cost more than the sends' own statements. 16 at most per
        # process keeps 4 workers and 2 web processes under PostgreSQL's
        # default 100 connections.
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=12,
            max_overflow=4,
            hide_parameters=True,
        )
    raise StorageError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// "
        "or postgresql://"
    )


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
    # transaction handling would start a deferred transaction too late).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # One writer at a time, decided at BEGIN: no upgrade deadlocks, and an
    # outbox claim is a single atomic step. Reads start deferred (WAL lets
    # them run beside the writer).
    if conn.get_execution_options().get(_READ):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class _SqliteWriteLock:
    """Writers to one SQLite file queue here before ``BEGIN IMMEDIATE``.

    SQLite makes a writer that finds the database locked sleep and retry, with
    sleeps growing to 100 ms; under load the unlucky one sleeps again and again
    while others take the lock (a p99 of hundreds of milliseconds). Queueing on
    a thread lock and an OS file lock (``flock`` on ``<database>.writelock``,
    shared by every process on the machine) wakes the next writer the moment
    the lock is free. Re-entrant within a thread. A no-op for PostgreSQL and
    where ``fcntl`` is missing.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0

    @classmethod
    def for_url(cls, url: str) -> _SqliteWriteLock:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            return cls(None)
        try:
            import fcntl  # noqa: F401
        except ImportError:  # pragma: no cover - not POSIX
            return cls(None)
        return cls(os.path.abspath(parsed.database) + ".writelock")

    def __enter__(self) -> None:
        if self.path is None:
            return
        import fcntl

        self._thread_lock.acquire()
        try:
            self._depth += 1
            if self._depth == 1:
                fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._depth -= 1
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        import fcntl

        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _descriptor(self) -> int:
        # A forked process (gunicorn) opens its own: flock belongs to the
        # open file, which a fork would share with its parent.
        if self._fd is None or self._pid != os.getpid():
            assert self.path is not None
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                # The database's folder is gone or not writable: the database
                # is as unreachable as if SQLite had said so.
                raise StorageError(
                    f"database unreachable: {exc.strerror or exc} ({self.path})"
                ) from exc
            self._pid = os.getpid()
        return self._fd
