"""`sweeper dashboard`: optuna-dashboard for the storage, made safe to leave running, plus live charts.

One process serves optuna-dashboard's own WSGI app and, in a background thread, saves the
regularizer chart (val_acc against dropout, by batch normalization) and the overfitting-gap chart
into every study whose trials changed, so the study page shows them current.

optuna-dashboard has no authentication and lets any visitor delete studies, so by default this
server refuses every request that is not a read (GET/HEAD) and binds 127.0.0.1; a password from
the environment or a file turns on HTTP basic authentication.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import signal
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from sweeper import storage
from sweeper.artifacts import kept_models, model_stores
from sweeper.artifacts.model_stores import ModelStore
from sweeper.errors import SweeperError
from sweeper.reporting import figures
from sweeper.storage import urls
from sweeper.storage.records import StudyRecord
from sweeper.studyfile import Artifacts

log = logging.getLogger("sweeper.dashboard")
READS = ("GET", "HEAD", "OPTIONS")
HEALTH_PATH = "/healthz"
"""Answers 200 without a password, and says nothing else: what a probe or a health check asks."""


def dashboard_password() -> str | None:
    """From `SWEEPER_DASHBOARD_PASSWORD_FILE` (Docker secrets) or `SWEEPER_DASHBOARD_PASSWORD`.

    A secret that is set but empty is a mistake (a missing file's content, an unset variable
    expanded to nothing), never a request for an open dashboard.
    """
    path = os.environ.get("SWEEPER_DASHBOARD_PASSWORD_FILE")
    if path is not None:
        from_file = urls.read_secret_file("SWEEPER_DASHBOARD_PASSWORD_FILE", path)
        if not from_file:
            raise SweeperError(
                f"SWEEPER_DASHBOARD_PASSWORD_FILE {path or '(empty name)'} holds no password; put one in it or unset the variable",
                2,
            )
        return from_file
    secret = os.environ.get("SWEEPER_DASHBOARD_PASSWORD")
    if secret is not None and not secret.strip():
        raise SweeperError("SWEEPER_DASHBOARD_PASSWORD is set but empty; set a password or unset the variable", 2)
    return secret


def guard(app: Callable, *, allow_writes: bool, password: str | None, user: str = "sweeper") -> Callable:
    """WSGI middleware: basic authentication if a password is set; reads only unless told otherwise;
    the health endpoint open to probes."""
    expected = f"{user}:{password}".encode() if password else None

    def guarded(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            body = b'{"status": "ok"}'
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if expected is not None and not _authorized(environ.get("HTTP_AUTHORIZATION", ""), expected):
            return _refuse(
                start_response,
                "401 Unauthorized",
                "authentication required",
                [("WWW-Authenticate", 'Basic realm="sweeper"')],
            )
        if not allow_writes and environ["REQUEST_METHOD"] not in READS:
            return _refuse(
                start_response,
                "403 Forbidden",
                "this dashboard is read-only; start it with --allow-writes to change studies",
            )
        return app(environ, start_response)

    return guarded


def _authorized(header: str, expected: bytes) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)


def _refuse(start_response: Callable, status: str, reason: str, headers: list | None = None) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


class ChartRefresher(threading.Thread):
    """Saves the live charts into each study whose trials changed since the last look."""

    def __init__(self, store: storage.Store, interval: float) -> None:
        super().__init__(name="chart-refresher", daemon=True)
        self.store, self.interval = store, interval
        self._seen: dict[str, tuple] = {}
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep serving; the next round may succeed
                log.warning("could not refresh charts: %s", urls.redact(str(exc)).splitlines()[0] if str(exc) else exc)
            self._stop.wait(self.interval)

    def refresh(self) -> int:
        """One round; returns how many studies got new charts."""
        updated = 0
        for study_summary in optuna.get_all_study_summaries(self.store.storage):
            record = StudyRecord.if_readable(study_summary.study_name, study_summary.user_attrs)
            if record is None or not record.created_by_sweeper:
                continue  # not a sweeper study (or a newer one's): never write into a study sweeper did not create
            study = optuna.load_study(study_name=study_summary.study_name, storage=self.store.storage)
            token = tuple((t.number, t.state.value) for t in study.get_trials(deepcopy=False))
            if self._seen.get(study_summary.study_name) == token:
                continue
            for graph_id, chart in figures.live_figures(study).items():
                optuna_dashboard.save_plotly_graph_object(study, chart, graph_object_id=graph_id)
            self._seen[study_summary.study_name] = token
            updated += 1
        return updated

    def stop(self) -> None:
        self._stop.set()


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - wsgiref's signature
        log.debug("%s %s", self.address_string(), format % args)


def _model_store(url: str) -> ModelStore | None:
    """The kept models' store ($SWEEPER_ARTIFACTS, else beside a SQLite file), so trial pages list them."""
    models_url = kept_models.store_url(Artifacts(), url)
    if models_url is None:
        log.info("dashboard: trials' models not listed (no store: set %s)", kept_models.ENV)
        return None
    try:
        return model_stores.open_store(models_url, create=False)
    except SweeperError as exc:
        log.info("dashboard: trials' models not listed (%s)", str(exc).split(":", 1)[0])
        return None


def serve(url: str, *, host: str, port: int, allow_writes: bool, refresh_seconds: float) -> int:
    password = dashboard_password()
    store = storage.connect(url, pool_size=4, create=False)
    try:
        models = _model_store(url)
        app = guard(
            optuna_dashboard.wsgi(store.storage, artifact_store=models), allow_writes=allow_writes, password=password
        )
        try:
            server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise SweeperError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)", 1) from None
        refresher = ChartRefresher(store, refresh_seconds)
        refresher.start()

        def shut_down(signum: int, _frame: object) -> None:
            log.info("dashboard: %s received, shutting down", signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, shut_down)
        signal.signal(signal.SIGINT, shut_down)
        log.info(
            "dashboard for %s on http://%s:%d/dashboard (%s%s)",
            urls.mask(url), host, server.server_port, "writes allowed" if allow_writes else "read-only",
            ", password required" if password else "",
        )  # fmt: skip
        if not password and host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "dashboard: no password, and %s is reachable from other machines: anyone there can read the "
                "studies%s; set SWEEPER_DASHBOARD_PASSWORD_FILE, or bind --host 127.0.0.1",
                host, " and change them" if allow_writes else "",
            )  # fmt: skip
        server.serve_forever()
        refresher.stop()
        server.server_close()
        return 0
    finally:
        store.close()
