"""The dashboard's guard: a password when set, reads only unless told, and a health endpoint for probes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sweeper.reporting.dashboard import guard


def _app(environ: dict[str, Any], start_response) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"dashboard"]


def _call(app, path: str, method: str = "GET", auth: str | None = None) -> tuple[str, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    if auth:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(auth.encode()).decode()
    seen: list[str] = []
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


@pytest.mark.parametrize("password", [None, "pw"])
def test_the_health_endpoint_answers_probes_without_a_password_and_says_nothing_else(password: str | None) -> None:
    app = guard(_app, allow_writes=False, password=password)
    assert _call(app, "/healthz") == ("200 OK", b'{"status": "ok"}')
    assert _call(app, "/healthz", "HEAD")[0] == "200 OK"
    assert _call(app, "/healthz", "POST")[0] == ("401 Unauthorized" if password else "403 Forbidden")


def test_a_password_and_read_only_are_enforced_everywhere_else() -> None:
    app = guard(_app, allow_writes=False, password="pw")
    assert _call(app, "/dashboard")[0] == "401 Unauthorized"
    assert _call(app, "/dashboard", auth="sweeper:wrong")[0] == "401 Unauthorized"
    assert _call(app, "/dashboard", auth="sweeper:pw") == ("200 OK", b"dashboard")
    assert _call(app, "/api/studies", "POST", auth="sweeper:pw")[0] == "403 Forbidden"
    assert _call(guard(_app, allow_writes=True, password=None), "/api/studies", "POST")[0] == "200 OK"
