"""The retry policy: a lost connection is waited out with visible retries; a wrong password is not."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy

from sweeper.errors import StorageError
from sweeper.storage import retry

URL = "postgresql+psycopg://u:topsecret@127.0.0.1:1/db"


def _operational(text: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(text))


def test_transient_and_permanent_failures_are_told_apart() -> None:
    assert retry.is_transient(_operational("connection refused"))
    assert not retry.is_transient(_operational('password authentication failed for user "u"'))
    assert not retry.is_transient(_operational('database "x" does not exist'))
    assert not retry.is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_a_passing_outage_is_retried_and_each_retry_is_heard(caplog) -> None:
    attempts, heard = [], []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise _operational("server closed the connection unexpectedly")
        return "done"

    with caplog.at_level(logging.WARNING, logger="sweeper.storage"):
        assert retry.retrying(flaky, "testing", url=URL, on_transient=lambda: heard.append(1)) == "done"
    assert len(attempts) == 3 and len(heard) == 2
    assert caplog.text.count("retrying in") == 2 and "topsecret" not in caplog.text


def test_a_permanent_failure_fails_at_once_with_the_url_masked() -> None:
    def refused() -> None:
        raise _operational('password authentication failed for user "u"')

    with pytest.raises(StorageError, match=r"storage postgresql://u:\*\*\*@127.0.0.1:1/db: testing failed") as caught:
        retry.retrying(refused, "testing", url=URL)
    assert "topsecret" not in str(caught.value)


def test_an_outage_longer_than_the_patience_is_a_clear_error() -> None:
    def down() -> None:
        raise _operational("connection refused")

    with pytest.raises(StorageError, match="unreachable while testing .* check that the server is up"):
        retry.retrying(down, "testing", url=URL, patience_seconds=1.0)
