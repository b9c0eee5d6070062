"""A storage URL → Optuna's RDB storage, plus the study lock that every worker on the study sees.

Optuna's tables are created once even when many workers start together; commands that only read
never create a database.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import random
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.orm
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

from sweeper.errors import StorageError
from sweeper.storage.retry import connect_patience, retrying
from sweeper.storage.urls import is_sqlite, mask

log = logging.getLogger("sweeper.storage")


def _engine_kwargs(url: str, pool_size: int) -> dict:
    if is_sqlite(url):
        # Writers queue on the file lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    connect_args: dict = {"connect_timeout": 10}
    if make_url(url).get_driver_name() == "psycopg":
        # No server-side prepared statements: through PgBouncer's transaction pooling the next
        # transaction may land on another server connection ("prepared statement already
        # exists"), and at a sweep's query rates they save nothing. The same URL then works
        # straight to PostgreSQL or through a pooler.
        connect_args["prepare_threshold"] = None
    return {
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_pre_ping": True,  # a PostgreSQL restart leaves dead connections in the pool
        "pool_timeout": 30,
        "connect_args": connect_args,
    }


# Lock tries back off from a few milliseconds (claims are short) to half a second, so that a
# hundred waiting workers poll PostgreSQL lightly and leave the CPU to the lock's holder.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.005, 0.5


@dataclass
class Store:
    """One worker's (or one report's) connection to the studies: the Optuna storage and the lock."""

    url: str
    storage: optuna.storages.RDBStorage
    _lock_engine: sqlalchemy.Engine | None
    _in_process: threading.Lock = field(default_factory=threading.Lock)
    """The worker's own threads (its claims, its reaper) take turns here rather than at the lock
    engine's one pooled connection, where a claim waiting behind a reaper's wait would time out."""

    @contextlib.contextmanager
    def lock(self, name: str, purpose: str) -> Iterator[None]:
        """Serialize study creation and trial claims across every worker of every host.

        On PostgreSQL, everything this thread asks of the storage while it holds the lock runs on
        the lock's own connection, inside its transaction (each Optuna call in a savepoint): the
        holder needs one server connection, never a second one from a pooler that may have none
        left to lend while waiters queue. Through PgBouncer with a pool of 2, a holder needing two
        connections deadlocked the fleet. How long each `purpose` waited for the lock and held it
        is logged at debug level: the lock is what bounds how many workers a study keeps busy.
        """
        asked = time.monotonic()
        with self._in_process, self._held(name):
            taken = time.monotonic()
            try:
                yield
            finally:
                log.debug(
                    "study lock %s, %s: waited %.1f ms, held %.1f ms",
                    name, purpose, (taken - asked) * 1e3, (time.monotonic() - taken) * 1e3,
                )  # fmt: skip

    @contextlib.contextmanager
    def _held(self, name: str) -> Iterator[None]:
        if self._lock_engine is None:
            with _file_lock(self.url):
                yield
            return
        with _advisory_lock(self._lock_engine, name) as connection, _sessions_on(self.storage, connection):
            yield

    def rows(self, statement: sqlalchemy.Executable, **params: object) -> list[sqlalchemy.Row]:
        """A raw query's rows, on the held lock's connection when this thread holds the lock."""
        session = self.storage.scoped_session()
        try:
            rows = list(session.execute(statement, params))
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            raise
        session.commit()
        return rows

    def close(self) -> None:
        self.storage.remove_session()
        self.storage.engine.dispose()
        if self._lock_engine is not None:
            self._lock_engine.dispose()


def connect(
    url: str,
    *,
    heartbeat_seconds: int | None = None,
    stale_after_seconds: int | None = None,
    max_retries: int | None = None,
    pool_size: int = 3,
    patience_seconds: float | None = None,
    stop: threading.Event | None = None,
    create: bool = True,
) -> Store:
    """Open the storage, creating Optuna's tables once even when many workers start together.

    A worker's pool has a connection for each of its threads that reads or writes outside the
    lock (its loop, its heartbeat, its reaper): with fewer, a beat waited for a connection behind
    the other two, each queued at a busy pooler, and lapsed while its worker lived.

    A server that is down or full is retried with backoff for `patience_seconds` (default
    `$SWEEPER_CONNECT_TIMEOUT`); a wrong password or a missing database fails at once. With
    `create=False` (commands that only read) a SQLite file that does not exist is an error, not
    a new empty database.
    """
    if not create:
        _require_existing_sqlite(url)
    return retrying(
        lambda: _connect(url, heartbeat_seconds, stale_after_seconds, max_retries, pool_size),
        "connecting",
        url=url,
        patience_seconds=patience_seconds if patience_seconds is not None else connect_patience(),
        stop=stop,
    )


def _connect(
    url: str, heartbeat_seconds: int | None, stale_after_seconds: int | None, max_retries: int | None, pool_size: int
) -> Store:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        heartbeat = {
            "heartbeat_interval": heartbeat_seconds,
            "grace_period": stale_after_seconds,
            "heartbeat_stale_trial_callback": (
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries) if heartbeat_seconds else None
            ),
        }
    if is_sqlite(url):
        with _file_lock(url):  # SQLite serializes writers anyway; the lock only orders table creation
            storage = _rdb_storage(url, _engine_kwargs(url, pool_size), **heartbeat)
        return Store(url, storage, None)
    _set_up_tables(url)
    storage = _rdb_storage(
        url, _engine_kwargs(url, pool_size), skip_table_creation=True, skip_compatibility_check=True, **heartbeat
    )
    return Store(url, storage, _create_engine(url))


def _rdb_storage(url: str, engine_kwargs: dict, **kwargs: object) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)  # type: ignore[arg-type]
        except RuntimeError as exc:  # Optuna's schema-version check; Optuna never upgrades by itself
            raise StorageError(_schema_advice(url, str(exc))) from None


_TABLE_RACES = 5


def _set_up_tables(url: str) -> None:
    """Create Optuna's tables if missing and check their version, one connection at a time.

    Optuna's own set-up holds a transaction open on one connection while it opens a second (its
    version check); through a pooler with as many starting workers as server connections, each
    holds one and waits for another, forever. Here every step shares the thread's one connection
    (a single-connection pool), and no lock is held: PostgreSQL's DDL is transactional, so workers
    creating the tables together see one of them win and the others fail with a duplicate, which
    they retry and find the tables made.
    """
    engine_kwargs = {
        "poolclass": sqlalchemy.pool.SingletonThreadPool,
        "connect_args": _engine_kwargs(url, 1)["connect_args"],
    }
    for attempt in range(_TABLE_RACES):
        try:
            _rdb_storage(url, engine_kwargs).engine.dispose()
            return
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == _TABLE_RACES - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3))  # nosec B311 # jitter, not a secret. Another worker created them: look again


def _require_existing_sqlite(url: str) -> None:
    if not is_sqlite(url):
        return
    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).is_file():
        raise StorageError(
            f"no SQLite database at {database} (nothing was created): run a worker first, or check --storage", 2
        )


def _schema_advice(url: str, message: str) -> str:
    found = (
        message.split("(set up by ", 1)[-1].split(")", 1)[0] if "(set up by " in message else "another Optuna version"
    )
    if "optuna storage upgrade" in message:
        password_hint = " (with the real password in place of ***)" if make_url(url).password else ""
        return (
            f"storage {mask(url)} holds tables set up by {found}, older than this Optuna ({optuna.__version__}) "
            f"needs; nothing was changed. Back it up, then run: optuna storage upgrade --storage '{mask(url)}'"
            + password_hint
        )
    return (
        f"storage {mask(url)} holds tables set up by {found}, newer than this Optuna ({optuna.__version__}) knows; "
        "nothing was changed. Upgrade sweeper's Optuna: pip install -U 'optuna>=5,<6'"
    )


def _create_engine(url: str) -> sqlalchemy.Engine:
    try:
        return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.QueuePool, **_engine_kwargs(url, 1))
    except NoSuchModuleError:
        scheme = make_url(url).drivername
        raise StorageError(f"unknown storage scheme {scheme!r}: use postgresql://... or sqlite:///...", 2) from None


@contextlib.contextmanager
def _advisory_lock(engine: sqlalchemy.Engine, name: str) -> Iterator[sqlalchemy.Connection]:
    # A transaction-level lock: it holds through PgBouncer's transaction pooling, where a
    # session-level lock would be taken on whichever server connection the pooler lent and
    # exclude no one. It is tried, not waited for: a waiter blocked inside a transaction would
    # keep a pooled server connection, and with as many waiters as the pool has connections the
    # holder could get none to finish its claim. Between tries the transaction is over, so the
    # pooler lends the connection to others. Committing (or losing the connection) releases it.
    connection = engine.connect()
    try:
        transaction = _try_lock_until_taken(connection, name)
    except SQLAlchemyError:
        connection.close()
        raise
    try:
        yield connection
    finally:
        try:
            transaction.commit()
        except SQLAlchemyError:
            pass  # the session is gone, and PostgreSQL dropped its locks with it
        finally:
            connection.close()


@contextlib.contextmanager
def _sessions_on(rdb: optuna.storages.RDBStorage, connection: sqlalchemy.Connection) -> Iterator[None]:
    """This thread's Optuna session bound to `connection`, each commit a savepoint of its transaction.

    Optuna's RDB storage takes a session per thread from its public `scoped_session`; the registry
    is thread-local, so the heartbeat thread keeps its own connection meanwhile.
    """
    rdb.scoped_session.registry.set(sqlalchemy.orm.Session(bind=connection, join_transaction_mode="create_savepoint"))
    try:
        yield
    finally:
        try:
            rdb.scoped_session.remove()
        except SQLAlchemyError:
            pass  # a lost connection: the lock's own commit says so next


def _try_lock_until_taken(connection: sqlalchemy.Connection, name: str) -> sqlalchemy.RootTransaction:
    pause = _FIRST_PAUSE
    while True:
        transaction = connection.begin()
        query = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(hashtext(:name))")
        if connection.execute(query, {"name": name}).scalar_one():
            return transaction
        transaction.commit()
        time.sleep(pause * random.uniform(0.5, 1.5))  # nosec B311 # jitter, so waiters do not retry in step
        pause = min(pause * 2, _LONGEST_PAUSE)


@contextlib.contextmanager
def _file_lock(url: str) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise StorageError(f"cannot create the SQLite database {database}: {exc.strerror}", 2) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one lock per file: SQLite serializes writers anyway
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
