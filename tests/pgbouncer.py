"""A real PgBouncer in transaction pooling in front of the test PostgreSQL, started by the tests.

Debian's `pgbouncer` (installed by `make test` as root) refuses to run as root, so it runs as the
`postgres` user. Clients authenticate with SCRAM against its userlist; PgBouncer then logs in to
the server as the same user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def own_database(admin_url: str, user: str, password: str) -> None:
    """Create the login role `user` if missing and give it the database of `admin_url`."""
    database = sqlalchemy.engine.make_url(admin_url).database
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(
            f"DO $$ BEGIN CREATE ROLE {user} LOGIN PASSWORD '{password}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))  # fmt: skip
        connection.execute(sqlalchemy.text(f'ALTER DATABASE "{database}" OWNER TO {user}'))
    admin.dispose()


def server_connections(admin: sqlalchemy.Engine, database: str) -> int:
    """PostgreSQL's client connections to `database`, the asking one left out (an autovacuum
    worker on the database is a backend too, but no client's)."""
    with admin.connect() as connection:
        return connection.execute(
            sqlalchemy.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            ),
            {"db": database},
        ).scalar_one()


class PgBouncer:
    """PgBouncer for one database: `pool_size` server connections shared by every client."""

    def __init__(self, server_url: str, user: str, password: str, pool_size: int = 10) -> None:
        server = sqlalchemy.engine.make_url(server_url)
        self.port = free_port()
        self.database = server.database
        self.user, self.password, self.pool_size = user, password, pool_size
        # A directory of its own: the postgres user cannot enter pytest's (root-only) temporary tree.
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="sweeper-pgbouncer-"))
        (workdir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        (workdir / "pgbouncer.ini").write_text(
            f"[databases]\n{self.database} = host={server.host} port={server.port or 5432} dbname={self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {workdir / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_db_connections = {pool_size}\n"
            "max_client_conn = 4000\nreserve_pool_size = 0\n"
            f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
        )
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """A storage URL through the pooler, without the password (it comes from a file or is typed)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        postgres = pwd.getpwnam("postgres")
        shutil.chown(self.workdir, postgres.pw_uid, postgres.pw_gid)
        for path in self.workdir.iterdir():
            shutil.chown(path, postgres.pw_uid, postgres.pw_gid)
        self._process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", PGBOUNCER, str(self.workdir / "pgbouncer.ini")],
            stdout=(self.workdir / "stdout.log").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(f"PgBouncer did not start: {self.log()[-1500:]}")

    def log(self) -> str:
        return "".join(
            p.read_text() for p in (self.workdir / "stdout.log", self.workdir / "pgbouncer.log") if p.exists()
        )

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running_pgbouncer(pg_url: str, password: str, pool_size: int) -> Iterator[PgBouncer]:
    """A started PgBouncer in front of `pg_url`'s database, for user `sweeper` with `password`.

    Missing PgBouncer fails as root (as CI runs, where `make test` installs it) and skips otherwise.
    """
    if not Path(PGBOUNCER).exists():
        if os.geteuid() == 0:
            pytest.fail("PgBouncer is missing: make test installs Debian's pgbouncer with apt-get as root")
        pytest.skip("no pgbouncer (install Debian's pgbouncer; it runs as the postgres user, which needs root)")
    if os.geteuid() != 0:
        pytest.skip("PgBouncer refuses root and is started here as the postgres user, which needs root")
    own_database(pg_url, "sweeper", password)
    pooler = PgBouncer(pg_url, "sweeper", password, pool_size=pool_size)
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.stop()
