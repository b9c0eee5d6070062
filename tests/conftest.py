"""Shared fixtures: a real PostgreSQL database per test, the committed CIFAR-10 slice, the CLI."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
import tomli_w

from sweeper import cli
from tests.pgserver import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DATA = ROOT / "tests" / "fixtures" / "cifar-10-batches-py"
LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
QUICK_TRAINING = {"max_train_images": 64, "validation_split": 0.5, "run_eagerly": True}
"""For tests whose trials only need to happen: one eager step of 32 images an epoch (a step costs
less than building its graph), validated on 32 others."""


def _answers(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except sqlalchemy.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database: given, local, or started here."""
    given = os.environ.get("SWEEPER_TEST_POSTGRES_URL")
    if given:
        if not _answers(given):
            pytest.fail("SWEEPER_TEST_POSTGRES_URL is set but no PostgreSQL answers there")
        yield given
        return
    if _answers(LOCAL_SERVER):
        yield LOCAL_SERVER
        return
    try:
        server = ThrowawayPostgres()
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(
            "PostgreSQL tests need a server: set SWEEPER_TEST_POSTGRES_URL, run one on 127.0.0.1:5432, "
            f"or install PostgreSQL's binaries so the tests can start one ({exc})"
        )
    yield server.url.replace("postgresql://", "postgresql+psycopg://")
    server.destroy()


def _fresh_database(server_url: str) -> Iterator[str]:
    name = f"sweeper_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(sqlalchemy.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new, empty database for this test on the real server; dropped afterwards."""
    yield from _fresh_database(pg_server)


@pytest.fixture
def throwaway_pg(request: pytest.FixtureRequest) -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own, which the test may stop and start (settings: indirect param)."""
    server = ThrowawayPostgres(**getattr(request, "param", {}))
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sweeper-cache")


@pytest.fixture
def cli_env(cache_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for `sweeper` subprocesses: the committed data slice, a shared cache, no storage,
    the test's own folder for kept models."""
    env = {k: v for k, v in os.environ.items() if k != "SWEEPER_STORAGE"}
    env.update(SWEEPER_DATA_DIR=str(FIXTURE_DATA), SWEEPER_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    env.update(SWEEPER_ARTIFACTS=f"file://{tmp_path / 'models'}")
    return env


def sweeper_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweeper", *args]


def run_sweeper(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(sweeper_command(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def sweeper_main(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """`sweeper ARGS` in this process, for commands where a subprocess would prove nothing more."""
    capsys.readouterr()  # what the test printed before is not the command's
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse's refusal, as the process would exit with it
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["sweeper", *args], code, out, err)


def study_file(tmp_path: Path, base: str = "smoke", **sections: dict) -> Path:
    """A copy of studies/BASE.toml with some sections' keys replaced (`study={"budget": 3}`)."""
    spec = tomllib.loads((ROOT / "studies" / f"{base}.toml").read_text())
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(spec.get(section), dict) and "type" not in values:
            spec[section].update(values)
        else:
            spec[section] = values
    path = tmp_path / f"{spec['study']['name']}.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def http_status(url: str, method: str = "GET", auth: str | None = None) -> int:
    """The HTTP status a request gets (with basic auth `user:password` if given); 0 while nothing listens."""
    request = urllib.request.Request(url, method=method)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
