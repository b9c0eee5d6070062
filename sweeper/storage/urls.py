"""Storage URLs as users write them, and the passwords in them, which never leave unmasked.

`--storage`, else `SWEEPER_STORAGE`, else an embedded SQLite file in the working directory.
PostgreSQL URLs are taken as users write them (`postgresql://user:pw@host/db`) and run on
psycopg 3; the password can come from `SWEEPER_STORAGE_PASSWORD_FILE` instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sweeper._masking import mask_url_text
from sweeper.errors import StorageError

DEFAULT_URL = "sqlite:///sweeper.db"
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
    if "@" in (parsed.host or ""):
        raise StorageError(
            f"storage URL {mask(url)}: its password holds an '@'; write it as %40, "
            "or put the password in the file named by SWEEPER_STORAGE_PASSWORD_FILE",
            2,
        )
    password_file = os.environ.get("SWEEPER_STORAGE_PASSWORD_FILE")
    if password_file and parsed.password is None and parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(password=read_secret_file("SWEEPER_STORAGE_PASSWORD_FILE", password_file))
    return parsed


def read_secret_file(variable: str, path: str) -> str:
    """The secret in the file that `variable` names (as Docker secrets provide), stripped; a file
    that cannot be read or is not UTF-8 text is bad input (exit 2)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StorageError(f"cannot read {variable} {path}: {exc.strerror}", 2) from None
    except UnicodeDecodeError:
        raise StorageError(f"{variable} {path} is not UTF-8 text", 2) from None


def render(url: URL) -> str:
    """The URL as the driver takes it; every form of its password is remembered for `redact`."""
    query_passwords = url.query.get("password", ())
    for password in [url.password, *([query_passwords] if isinstance(query_passwords, str) else query_passwords)]:
        if password:
            _SECRETS.update({str(password), quote(str(password), safe=""), quote_plus(str(password))})
    return url.render_as_string(hide_password=False)


def redact(text: str) -> str:
    """Any text with every password this process has seen replaced by ***."""
    for secret in sorted(_SECRETS, key=len, reverse=True):  # a longer form before its part
        text = text.replace(secret, "***")
    return text


def mask(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ***, for anything a
    person or a log may see."""
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        return "<unparsable storage URL>"
    as_written = url.replace("postgresql+psycopg://", "postgresql://", 1)  # as users write it; psycopg is our detail
    return mask_url_text(as_written)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"
