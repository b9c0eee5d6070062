"""The fleet on a busy machine and through a long outage: live work is never reaped.

A GPU host's CPUs are busy with data pipelines; every core is kept loaded here by CPU hogs that
the test starts and always stops. These tests take minutes: `pytest -m "not slow"` leaves them out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, run_sweeper, study_file
from tests.fleet import FINISHED, WorkerProcess, assert_exact_budget, trials, wait_for
from tests.pgbouncer import running_pgbouncer

pytestmark = pytest.mark.slow
HOG = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end:\n    pass\n"  # bounded even if orphaned


HOGS_PER_CORE = 4


@pytest.fixture
def busy_cpus() -> Iterator[int]:
    """Four spinning processes per core for the test's whole length (load average about 4 × cores + the fleet)."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(HOGS_PER_CORE * (os.cpu_count() or 1))]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.fixture
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The study's storage: a SQLite file, PostgreSQL, or PostgreSQL through PgBouncer with a pool of 2."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'busy.db'}"
        return
    pg_url = request.getfixturevalue("pg_url")
    if request.param == "postgresql":
        yield pg_url
        return
    with running_pgbouncer(pg_url, POOLED_PASSWORD, pool_size=2) as pooler:
        yield pooler.url.replace("@", f":{POOLED_PASSWORD}@")


POOLED_PASSWORD = "busy-pool-pw"


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql", "pgbouncer-pool-2"], indirect=True)
def test_four_workers_of_the_smoke_study_on_busy_cpus_fail_nothing(storage_url, busy_cpus, cli_env, tmp_path) -> None:
    url = storage_url
    result = run_sweeper("sweep", str(ROOT / "studies" / "smoke.toml"), "--workers", "4", "--storage", url,
                         env=cli_env, cwd=tmp_path, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    states = [t.state for t in assert_exact_budget(url, "smoke", 6)]
    assert TrialState.FAIL not in states, (
        f"nothing was killed, so a FAIL is a live trial reaped: {result.stderr[-3000:]}"
    )
    # A reap logs "reaped by WORKER"; the reaper's note on the beat lag ("a trial is reaped only after...") is no reap.
    assert "reaped by" not in result.stderr, result.stderr[-3000:]


def test_postgresql_down_for_a_minute_mid_sweep_reaps_no_live_trial(
    throwaway_pg, busy_cpus, cli_env, tmp_path: Path
) -> None:
    url = throwaway_pg.url
    path = study_file(tmp_path, study={"name": "outage", "budget": 6}, training={"max_train_images": 100})
    workers = [WorkerProcess(path, url, cli_env, tmp_path) for _ in range(2)]
    wait_for(lambda: any(t.state in FINISHED for t in trials(url, "outage")), what="a finished trial")
    throwaway_pg.stop("fast")
    time.sleep(60)
    throwaway_pg.start()
    codes = [w.wait(timeout=600) for w in workers]
    logs = "\n".join(w.log() for w in workers)
    assert codes == [0, 0], logs
    assert "storage unreachable" in logs and "Traceback" not in logs
    states = [t.state for t in assert_exact_budget(url, "outage", 6)]
    assert TrialState.FAIL not in states, f"both workers lived through the outage, so no trial may be reaped:\n{logs}"
