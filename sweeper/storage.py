"""Storage URL → Optuna storage, plus a lock that every worker on the study sees.

`--storage`, else `SWEEPER_STORAGE`, else an embedded SQLite file in the working directory.
PostgreSQL URLs are taken as users write them (`postgresql://user:pw@host/db`) and run on
psycopg 3. Passwords never leave this module unmasked.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from sweeper.errors import StorageError

DEFAULT_URL = "sqlite:///sweeper.db"
log = logging.getLogger("sweeper.storage")
T = TypeVar("T")
_PERMANENT = ("password authentication failed", "does not exist", "no password supplied", "role ")
_SECRETS: set[str] = set()


def resolve_url(cli_value: str | None) -> str:
    url = cli_value or os.environ.get("SWEEPER_STORAGE") or DEFAULT_URL
    return render(_parse(url))


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a malformed host or port, e.g. "[::1" or ":x"
        raise StorageError(
            f"not a storage URL: {mask(url)!r} (use postgresql://USER:PASSWORD@HOST/DB or sqlite:///FILE)", 2
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):  # the study lock and batched writes know these two
        raise StorageError(f"unknown storage scheme {parsed.drivername!r}: use postgresql://... or sqlite:///...", 2)
    password_file = os.environ.get("SWEEPER_STORAGE_PASSWORD_FILE")
    if password_file and parsed.password is None and parsed.get_backend_name() == "postgresql":
        try:
            parsed = parsed.set(password=Path(password_file).read_text().strip())
        except OSError as exc:
            raise StorageError(
                f"cannot read SWEEPER_STORAGE_PASSWORD_FILE {password_file}: {exc.strerror}", 2
            ) from None
    return parsed


def render(url: URL) -> str:
    if url.password:
        _SECRETS.add(str(url.password))
    return url.render_as_string(hide_password=False)


def redact(text: str) -> str:
    """Any text with every password this process has seen replaced by ***."""
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def mask(url: str) -> str:
    """The URL with its password replaced by ***, for anything a person or a log may see."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparsable storage URL>"
    if parsed.drivername == "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql")  # as users write it; psycopg is our detail
    return parsed.render_as_string(hide_password=True)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _engine_kwargs(url: str, pool_size: int) -> dict:
    if is_sqlite(url):
        # Writers queue on the file lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    return {
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_pre_ping": True,  # a PostgreSQL restart leaves dead connections in the pool
        "pool_timeout": 30,
        "connect_args": {"connect_timeout": 10},
    }


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


def connect_patience() -> float:
    """How long to keep retrying an unreachable server: `$SWEEPER_CONNECT_TIMEOUT` seconds, default 60."""
    value = os.environ.get("SWEEPER_CONNECT_TIMEOUT", "60")
    try:
        return max(0.0, float(value))
    except ValueError:
        raise StorageError(f"SWEEPER_CONNECT_TIMEOUT must be a number of seconds, not {value!r}", 2) from None


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
    connection = engine.connect()
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
    except SQLAlchemyError:
        connection.close()
        raise
    try:
        yield
    finally:
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name})
            connection.commit()
        except SQLAlchemyError:
            pass  # the session is gone, and PostgreSQL dropped its locks with it
        finally:
            connection.close()


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


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__  # Optuna's wrapper only says "an exception is raised during the commit"
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection that may come back, as opposed to a wrong password or bad data."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if not isinstance(
        cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)
    ):
        return False
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return not any(marker in str(cause) for marker in _PERMANENT)


def retrying(
    action: Callable[[], T],
    what: str,
    *,
    url: str,
    patience_seconds: float = 300.0,
    stop: threading.Event | None = None,
    on_transient: Callable[[], None] | None = None,
) -> T:
    """Run a storage action, retrying with backoff (and a log line each time) while the server is away.

    `on_transient` hears of each lost connection (the worker's reaper waits for the storage to settle).
    """
    deadline = time.monotonic() + patience_seconds
    delay = 0.5
    while True:
        try:
            return action()
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            if not is_transient(exc):
                raise StorageError(f"storage {mask(url)}: {what} failed: {redact(_first_line(exc))}") from None
            if on_transient is not None:
                on_transient()
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise StorageError(
                    f"storage {mask(url)} unreachable while {what} ({redact(_first_line(exc))}); "
                    "check that the server is up and accepts connections"
                ) from None
            log.warning("storage unreachable while %s (%s); retrying in %.1fs", what, redact(_first_line(exc)), delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def adopt_orphans(store: Store, study_id: int, older_than_seconds: float) -> int:
    """Give a heartbeat to RUNNING trials that never had one, so Optuna's stale check can reap them.

    Raw SQL because Optuna's public API has no way to find them: its stale check only sees
    trials that have a heartbeat row.

    A worker killed between claiming a trial and its first heartbeat, or whose claim committed
    while its connection dropped, leaves such a trial; Optuna never considers it stale.
    Call under the study lock, where no live worker is between claim and heartbeat.
    """
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=older_than_seconds)
    query = sqlalchemy.text(
        "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE t.study_id = :study AND t.state = 'RUNNING' AND h.trial_id IS NULL AND t.datetime_start < :cutoff"
    )
    with store.storage.engine.connect() as connection:
        orphans = [row[0] for row in connection.execute(query, {"study": study_id, "cutoff": cutoff})]
    for trial_id in orphans:
        store.storage.record_heartbeat(trial_id)
    return len(orphans)
