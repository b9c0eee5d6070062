"""The retry policy for storage calls: what counts as a passing outage, and how long to wait for the server.

A lost or refused connection is retried with backoff and a log line each time; a wrong password,
a missing database or bad data fails at once with one line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from sweeper.errors import StorageError
from sweeper.storage.urls import mask, redact

log = logging.getLogger("sweeper.storage")
T = TypeVar("T")
_PERMANENT = ("password authentication failed", "does not exist", "no password supplied", "role ")
_DISK_FULL = ("database or disk is full", "No space left on device", "could not extend file")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__  # Optuna's wrapper only says "an exception is raised during the commit"
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def describe(exc: BaseException) -> str:
    """The error's first line with any password masked: what a log line may say of it."""
    return redact(_first_line(exc))


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection that may come back, as opposed to a wrong password or bad data."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sqlalchemy.exc.PendingRollbackError):
        # Only follows a connection lost mid-transaction (Optuna's trial query retries a slower form
        # in the same session when the first fails); the session is closed after it, so a retry
        # gets a fresh connection.
        return True
    if not isinstance(
        cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)
    ):
        return False
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return not any(marker in str(cause) for marker in (*_PERMANENT, *_DISK_FULL))


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's or PostgreSQL's disk is full: no retry helps until someone frees space."""
    return any(marker in str(exc.__cause__ or exc) for marker in _DISK_FULL)


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
            if is_disk_full(exc):
                raise StorageError(
                    f"storage {mask(url)}: the disk is full ({what} failed: {describe(exc)}); free space, "
                    "then start the worker again: a trial it was running is reaped and queued again"
                ) from None
            if not is_transient(exc):
                raise StorageError(f"storage {mask(url)}: {what} failed: {describe(exc)}") from None
            if on_transient is not None:
                on_transient()
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise StorageError(
                    f"storage {mask(url)} unreachable while {what} ({describe(exc)}); "
                    "check that the server is up and accepts connections"
                ) from None
            log.warning("storage unreachable while %s (%s); retrying in %.1fs", what, describe(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def connect_patience() -> float:
    """How long to keep retrying an unreachable server: `$SWEEPER_CONNECT_TIMEOUT` seconds, default 60."""
    value = os.environ.get("SWEEPER_CONNECT_TIMEOUT", "60")
    try:
        return max(0.0, float(value))
    except ValueError:
        raise StorageError(f"SWEEPER_CONNECT_TIMEOUT must be a number of seconds, not {value!r}", 2) from None
