"""Storage URLs: parsed as users write them, passwords masked and redacted, mistakes exit 2."""

from __future__ import annotations

import pytest

from sweeper.errors import StorageError
from sweeper.storage import urls


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


@pytest.mark.parametrize(
    "typed, secret",
    [
        ("postgresql://alice@db/x?password=Qp-7731", "Qp-7731"),
        ("postgresql://alice@db/x?passfile=/run/pgpass&password=Qp%207731", "Qp 7731"),
        ("postgresql://alice:Qp%407731@db/x", "Qp@7731"),
        ("postgresql://alice:Qp 7731@db:5432/x", "Qp 7731"),
    ],
)
def test_every_form_of_a_password_libpq_takes_is_masked_and_redacted(typed: str, secret: str) -> None:
    resolved = urls.resolve_url(typed)
    encoded = {secret, secret.replace(" ", "%20"), secret.replace(" ", "+"), secret.replace("@", "%40")}
    assert "***" in urls.mask(resolved) and not any(form in urls.mask(resolved) for form in encoded)
    said = urls.redact(f"connecting to {resolved} failed: password {secret!r} rejected")
    assert not any(form in said for form in encoded), said


def test_an_unencoded_at_in_the_password_is_refused_without_showing_any_of_it() -> None:
    with pytest.raises(StorageError, match="holds an '@'; write it as %40") as caught:
        urls.resolve_url("postgresql://alice:Qp@7731@db/x")
    assert caught.value.exit_code == 2 and "Qp" not in str(caught.value) and "7731" not in str(caught.value)


def test_a_password_file_that_is_not_utf8_is_bad_input(tmp_path, monkeypatch) -> None:
    (tmp_path / "pw").write_bytes(b"\xff\xfe-not-text")
    monkeypatch.setenv("SWEEPER_STORAGE_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(StorageError, match="is not UTF-8 text") as caught:
        urls.resolve_url("postgresql://bob@db/x")
    assert caught.value.exit_code == 2
