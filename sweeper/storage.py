"""A storage URL → Optuna's RDB storage, plus the study lock that every worker on the study sees.

Optuna's tables are created once even when many workers start together; commands that only read
never create a database.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

from sweeper.errors import StorageError
from sweeper.retry import connect_patience, retrying
from sweeper.urls import is_sqlite, mask


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

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialize study creation and trial claims across every worker of every host."""
        with _lock(self.url, self._lock_engine, name):
            yield

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
    pool_size: int = 2,
    patience_seconds: float | None = None,
    stop: threading.Event | None = None,
    create: bool = True,
) -> Store:
    """Open the storage, creating Optuna's tables once even when many workers start together.

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
    lock_engine = None if is_sqlite(url) else _create_engine(url)
    try:
        with _lock(url, lock_engine, "sweeper:schema"), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=_engine_kwargs(url, pool_size),
                heartbeat_interval=heartbeat_seconds,
                grace_period=stale_after_seconds,
                heartbeat_stale_trial_callback=(
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
                    if heartbeat_seconds
                    else None
                ),
            )
    except SQLAlchemyError:
        if lock_engine is not None:
            lock_engine.dispose()
        raise
    except RuntimeError as exc:  # Optuna's schema-version check; Optuna never upgrades by itself
        if lock_engine is not None:
            lock_engine.dispose()
        raise StorageError(_schema_advice(url, str(exc))) from None
    return Store(url, storage, lock_engine)


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
def _lock(url: str, engine: sqlalchemy.Engine | None, name: str) -> Iterator[None]:
    if engine is None:
        with _file_lock(url):
            yield
        return
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
        yield
    finally:
        try:
            transaction.commit()
        except SQLAlchemyError:
            pass  # the session is gone, and PostgreSQL dropped its locks with it
        finally:
            connection.close()


def _try_lock_until_taken(connection: sqlalchemy.Connection, name: str) -> sqlalchemy.RootTransaction:
    pause = _FIRST_PAUSE
    while True:
        transaction = connection.begin()
        query = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(hashtext(:name))")
        if connection.execute(query, {"name": name}).scalar_one():
            return transaction
        transaction.commit()
        time.sleep(pause * random.uniform(0.5, 1.5))  # jitter: waiters do not retry in step
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


def abandoned_claim(store: Store, study_name: str) -> int | None:
    """The id of a RUNNING trial that never had a heartbeat: a claim cut short. Call under the study lock.

    A claim creates its trial and records its first heartbeat under the study lock, so under the
    lock such a trial has no live worker: the storage went away between the two (an outage, a
    connection dropped after its commit) or the worker was killed there. The next claim takes it
    over. Raw SQL because Optuna's public API cannot see which trials have a heartbeat.
    """
    query = sqlalchemy.text(
        "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING' AND h.trial_id IS NULL ORDER BY t.trial_id LIMIT 1"
    )
    with store.storage.engine.connect() as connection:
        return connection.execute(query, {"name": study_name}).scalar()
