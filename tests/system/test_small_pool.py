"""A fleet larger than PgBouncer's pool: workers started together never deadlock on server connections.

With a pool of 2 in transaction pooling, a lock holder that needed a second server connection
while a waiter (or its own start-up) kept the other one in a transaction stalled every worker
until PgBouncer's `query_wait_timeout`. Here workers start together through a pool of 2, and the
database is watched all along for sessions left idle in a transaction.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy

from tests.conftest import QUICK_TRAINING, study_file
from tests.fleet import assert_exact_budget
from tests.pgbouncer import running_pgbouncer

PASSWORD = "small-pool-pw"
LONGEST_IDLE_TRANSACTION = 10.0
"""Seconds. A claim's transaction lasts milliseconds; a session parked by a waiting worker lasted
until PgBouncer's 120-s query_wait_timeout."""


def idle_transactions(admin: sqlalchemy.Engine, database: str) -> list[tuple[float, str]]:
    """(age in seconds, last query) of every session of `database` idle inside a transaction."""
    with admin.connect() as connection:
        rows = connection.execute(
            sqlalchemy.text(
                "SELECT extract(epoch FROM now() - xact_start), left(query, 100) FROM pg_stat_activity "
                "WHERE datname = :db AND state LIKE 'idle in transaction%'"
            ),
            {"db": database},
        ).all()
    return [(float(age), query) for age, query in rows]


def run_fleet_through_small_pool(pg_url: str, tmp_path: Path, env: dict, workers: int, pool_size: int) -> None:
    budget = 2 * workers
    path = study_file(tmp_path, study={"name": "pooled", "budget": budget}, training=QUICK_TRAINING)
    with running_pgbouncer(pg_url, PASSWORD, pool_size) as pooler:
        url = pooler.url.replace("@", f":{PASSWORD}@")
        logs = [(tmp_path / f"worker-{i}.log").open("w") for i in range(workers)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "sweeper", "worker", str(path), "--storage", url],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            for log in logs
        ]
        admin = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.pool.NullPool)
        longest: tuple[float, str] = (0.0, "")
        deadline = time.monotonic() + 600
        try:
            while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
                longest = max([longest, *idle_transactions(admin, pooler.database)])
                time.sleep(0.25)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
            codes = [p.wait() for p in processes]
            admin.dispose()
            for log in logs:
                log.close()
        output = "\n".join((tmp_path / f"worker-{i}.log").read_text()[-1500:] for i in range(workers))
        assert codes == [0] * workers, f"{codes}\n{output}\n{pooler.log()[-2000:]}"
        assert longest[0] < LONGEST_IDLE_TRANSACTION, f"a session sat idle in a transaction for {longest}"
        assert_exact_budget(url, "pooled", budget)


@pytest.mark.parametrize("workers", [3, 4, pytest.param(8, marks=pytest.mark.slow)])  # 8: with the load tests
def test_workers_started_together_through_a_pool_of_two_finish_the_budget(
    workers: int, pg_url: str, cli_env: dict, tmp_path: Path
) -> None:
    run_fleet_through_small_pool(pg_url, tmp_path, cli_env, workers, pool_size=2)
