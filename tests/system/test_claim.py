"""Claims in-process, on real PostgreSQL and SQLite: a claim cut short is taken over, not reaped, and
no claim reads the study's history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from optuna.trial import TrialState

from benchmarks.common import add_history
from sweeper import fleet, storage, studyfile
from sweeper.fleet.recording import Recorder
from sweeper.storage import optuna_internals, urls
from sweeper.storage.records import TrialRecord
from tests.conftest import study_file


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'claims.db'}"
    return request.getfixturevalue("pg_url")


def test_a_claim_cut_short_before_its_heartbeat_is_taken_over_by_the_next(url: str, tmp_path: Path) -> None:
    spec = studyfile.load(study_file(tmp_path, study={"name": "claims", "budget": 2}, baselines=[]))
    store = storage.connect(urls.resolve_url(url), heartbeat_seconds=1, stale_after_seconds=4)
    try:
        study = fleet.open_study(store, spec)
        cut_short = study.ask()  # what an outage between creating the trial and its heartbeat leaves

        taken = fleet.claim(store, study, spec, "unit")
        assert taken.status == fleet.ClaimStatus.TRIAL and taken.trial.number == cut_short.number
        fleet.start(taken.trial, study, spec, "unit")
        assert set(taken.trial.params) == {"dropout", "batchnorm", "learning_rate"}
        assert optuna_internals.abandoned_claim(store, spec.name) is None  # it has its heartbeat now
        fresh = fleet.claim(store, study, spec, "unit")
        assert fresh.status == fleet.ClaimStatus.TRIAL and fresh.trial.number == cut_short.number + 1
        fleet.start(fresh.trial, study, spec, "unit")
        assert fleet.claim(store, study, spec, "unit").status == fleet.ClaimStatus.FULL

        recorder = Recorder(store, study, 0, lambda action, _what: action())
        for claim in (taken, fresh):
            recorder.finish(claim.trial, TrialState.COMPLETE, TrialRecord(), {"val_acc": [0.5], "acc": [0.5]}, 0.0)
        assert fleet.claim(store, study, spec, "unit").status == fleet.ClaimStatus.DONE
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [TrialState.COMPLETE, TrialState.COMPLETE]  # none reaped, none beyond the budget
    finally:
        store.close()


def test_a_new_workers_claim_reads_none_of_the_studys_history(pg_url: str, tmp_path: Path) -> None:
    """Every claim of the fleet waits for the study lock: what one reads there must not grow with
    the history (a new worker's `study.ask()` loaded every past trial under it: 4.5 s at 10,000)."""
    spec = studyfile.load(
        study_file(tmp_path, study={"name": "long", "budget": 400}, compare={"by": "batchnorm", "min_trials": 2})
    )
    url = urls.resolve_url(pg_url)
    first = storage.connect(url, heartbeat_seconds=1, stale_after_seconds=4)
    fleet.open_study(first, spec)
    first.close()
    add_history(url, spec, trials=300, epochs=10)
    store = storage.connect(url, heartbeat_seconds=1, stale_after_seconds=4)  # a new worker: nothing cached
    rows_read: list[int] = []

    def count(_conn: object, cursor: Any, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            rows_read.append(max(cursor.rowcount, 0))

    try:
        study = fleet.open_study(store, spec)
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", count)
        try:
            claim = fleet.claim(store, study, spec, "new")
        finally:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "after_cursor_execute", count)
        assert claim.status == fleet.ClaimStatus.TRIAL and claim.progress.finished == 300
        assert sum(rows_read) < 40, f"the claim read {sum(rows_read)} rows in {len(rows_read)} queries"
        fleet.start(claim.trial, study, spec, "new")  # the sampler reads the history, outside the lock
        assert set(claim.trial.params) == {"dropout", "batchnorm", "learning_rate"}
    finally:
        store.close()
