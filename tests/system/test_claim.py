"""Claims in-process, on real PostgreSQL and SQLite: a claim cut short is taken over, not reaped."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeper import fleet, storage, studyfile
from sweeper.fleet.heartbeat import Reach
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
        reaper = fleet.Reaper(store, study, spec, Reach(), "unit")

        taken = fleet.claim(store, study, spec, reaper, "unit")
        assert taken.status == fleet.ClaimStatus.TRIAL and taken.trial.number == cut_short.number
        fleet.start(taken.trial, study, spec, "unit")
        assert set(taken.trial.params) == {"dropout", "batchnorm", "learning_rate"}
        assert optuna_internals.abandoned_claim(store, spec.name) is None  # it has its heartbeat now
        fresh = fleet.claim(store, study, spec, reaper, "unit")
        assert fresh.status == fleet.ClaimStatus.TRIAL and fresh.trial.number == cut_short.number + 1
        fleet.start(fresh.trial, study, spec, "unit")
        assert fleet.claim(store, study, spec, reaper, "unit").status == fleet.ClaimStatus.FULL

        recorder = Recorder(store, study, 0, lambda action, _what: action())
        for claim in (taken, fresh):
            recorder.finish(claim.trial, TrialState.COMPLETE, TrialRecord(), {"val_acc": [0.5], "acc": [0.5]}, 0.0)
        assert fleet.claim(store, study, spec, reaper, "unit").status == fleet.ClaimStatus.DONE
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [TrialState.COMPLETE, TrialState.COMPLETE]  # none reaped, none beyond the budget
    finally:
        store.close()
