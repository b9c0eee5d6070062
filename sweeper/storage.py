"""Storage URL → Optuna storage, plus a lock that every worker on the study sees.

`--storage`, else `SWEEPER_STORAGE`, else an embedded SQLite file in the working directory.
PostgreSQL URLs are taken as users write them (`postgresql://user:pw@host/db`) and run on
psycopg 3. Passwords never leave this module unmasked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from sweeper.errors import StorageError

DEFAULT_URL = "sqlite:///sweeper.db"
_SECRETS: set[str] = set()


def resolve_url(cli_value: str | None) -> str:
    url = cli_value or os.environ.get("SWEEPER_STORAGE") or DEFAULT_URL
    return render(_parse(url))


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"not a storage URL: {mask(url)!r} (use postgresql://USER:PASSWORD@HOST/DB or sqlite:///FILE)", 2
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    password_file = os.environ.get("SWEEPER_STORAGE_PASSWORD_FILE")
    if password_file and parsed.password is None and parsed.get_backend_name() == "postgresql":
        try:
            parsed = parsed.set(password=Path(password_file).read_text().strip())
        except OSError as exc:
            raise StorageError(f"cannot read SWEEPER_STORAGE_PASSWORD_FILE {password_file}: {exc.strerror}", 2) from None
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
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable storage URL>"


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
) -> Store:
    """Open the storage, creating Optuna's tables once even when many workers start together."""
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
    except SQLAlchemyError as exc:
        if lock_engine is not None:
            lock_engine.dispose()
        raise StorageError(f"cannot open storage {mask(url)}: {_first_line(exc)}") from None
    except RuntimeError as exc:  # Optuna's schema-version check
        raise StorageError(f"storage {mask(url)}: {_first_line(exc)}") from None
    return Store(url, storage, lock_engine)


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
    try:
        connection = engine.connect()
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": name})
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot reach storage {mask(url)}: {_first_line(exc)}") from None
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
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one lock per file: SQLite serializes writers anyway
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
