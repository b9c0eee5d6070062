"""Storage URLs: parsed as users write them, passwords masked and redacted, mistakes exit 2."""

from __future__ import annotations

import pytest

from sweeper import urls
from sweeper.errors import StorageError


def test_postgresql_urls_run_on_psycopg_and_show_without_their_password() -> None:
    resolved = urls.resolve_url("postgresql://alice:s3cret@db:5432/sweeper")
    assert resolved == "postgresql+psycopg://alice:s3cret@db:5432/sweeper"
    assert urls.mask(resolved) == "postgresql://alice:***@db:5432/sweeper"
    assert urls.redact("connection to db failed for s3cret") == "connection to db failed for ***"


def test_the_default_is_the_embedded_sqlite_file(monkeypatch) -> None:
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    assert urls.resolve_url(None) == urls.DEFAULT_URL == "sqlite:///sweeper.db"
    monkeypatch.setenv("SWEEPER_STORAGE", "sqlite:///other.db")
    assert urls.resolve_url(None) == "sqlite:///other.db" and urls.is_sqlite("sqlite:///other.db")


def test_a_password_file_fills_a_url_without_a_password(tmp_path, monkeypatch) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    monkeypatch.setenv("SWEEPER_STORAGE_PASSWORD_FILE", str(tmp_path / "pw"))
    assert urls.resolve_url("postgresql://bob@db/x") == "postgresql+psycopg://bob:from-file@db/x"
    assert urls.resolve_url("postgresql://bob:typed@db/x") == "postgresql+psycopg://bob:typed@db/x"


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a storage URL"),
        ("postgresql://u:pw@[::1/x", "not a storage URL"),
        ("mysql://root@localhost/x", "unknown storage scheme 'mysql'"),
    ],
)
def test_mistakes_are_bad_input_and_never_show_the_password(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        urls.resolve_url(url)
    assert caught.value.exit_code == 2 and "pw@" not in str(caught.value)
