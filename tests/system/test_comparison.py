"""A fair comparison on real PostgreSQL: every group gets its share, whatever the sampler prefers."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeper import fleet, storage, studyfile
from sweeper.errors import StudyFileError
from sweeper.fleet import comparison, search
from sweeper.fleet.recording import Recorder
from sweeper.reporting import summary
from sweeper.storage import urls
from sweeper.storage.records import TrialRecord
from tests.conftest import study_file

BUDGET, MIN_TRIALS = 7, 3
FAVOURITES = [{"dropout": d, "batchnorm": True, "learning_rate": 1e-3} for d in (0.2, 0.3, 0.4, 0.45)]


def _sweep_by_claims(url: str, spec: studyfile.StudySpec) -> list[fleet.Claim]:
    """The worker's own claim and record path; batch normalization on always scores far higher."""
    store = storage.connect(urls.resolve_url(url), heartbeat_seconds=10, stale_after_seconds=40)
    try:
        study = fleet.open_study(store, spec)
        recorder = Recorder(store, study, 0, lambda action, _what: action())
        claims = []
        while (claim := fleet.claim(store, study, spec, "unit")).status == fleet.ClaimStatus.TRIAL:
            claims.append(claim)
            fleet.start(claim.trial, study, spec, "unit")
            value = 0.9 if claim.trial.params["batchnorm"] else 0.1
            recorder.finish(
                claim.trial, TrialState.COMPLETE, TrialRecord(), {"val_acc": [value] * 3, "acc": [value] * 3}, 0.0
            )
        return claims
    finally:
        store.close()


@pytest.mark.parametrize("compare", [True, False], ids=["compared", "free"])
def test_each_group_gets_its_share_whatever_the_sampler_prefers(pg_url: str, tmp_path: Path, compare: bool) -> None:
    # Four baselines with batch normalization on come first, and TPE (one random start-up trial)
    # then favours the group that scored 0.9: left free, the other group rarely gets 3 of the 3
    # trials left; compared, it must.
    sections = {"compare": {"by": "batchnorm", "min_trials": MIN_TRIALS}} if compare else {}
    spec = studyfile.load(
        study_file(
            tmp_path,
            study={"name": "compare", "budget": BUDGET},
            sampler={"type": "tpe", "seed": 3, "n_startup_trials": 1, "multivariate": True},
            baselines=FAVOURITES,
            **sections,
        )
    )
    claims = _sweep_by_claims(pg_url, spec)
    store = storage.connect(urls.resolve_url(pg_url), heartbeat_seconds=10, stale_after_seconds=40)
    try:
        study = fleet.open_study(store, spec)
        trials = study.get_trials(deepcopy=False)
        content = summary.summary(study, "pg")
    finally:
        store.close()
    assert len(claims) == len(trials) == BUDGET  # the assignments are part of the budget, not beyond it
    assert all(t.state == TrialState.COMPLETE for t in trials)
    off = sum(not t.params["batchnorm"] for t in trials)
    groups = {g["value"]: g for g in content["groups"]}
    assert groups[True]["complete"] + groups.get(False, {"complete": 0})["complete"] == BUDGET
    assert all(g["epochs"] == 3 * g["complete"] for g in groups.values())
    if compare:
        assert off >= MIN_TRIALS and groups[False]["complete"] == off
    else:
        assert off < MIN_TRIALS  # the sampler's own preference, which the comparison overrides


def test_a_comparison_that_cannot_fit_the_budget_is_refused(tmp_path: Path) -> None:
    path = study_file(tmp_path, study={"name": "c", "budget": 5}, compare={"by": "batchnorm", "min_trials": 3})
    with pytest.raises(StudyFileError, match="needs 6 trials; the budget is 5"):
        studyfile.load(path)
    path = study_file(tmp_path, compare={"by": "dropout", "min_trials": 1})
    with pytest.raises(StudyFileError, match="must name a parameter with choices"):
        studyfile.load(path)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_groups_count_queued_and_running_trials_but_not_confirmation_runs(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    spec = studyfile.load(study_file(tmp_path, compare={"by": "batchnorm", "min_trials": 3}))
    store = storage.connect(urls.resolve_url(url))
    try:
        study = fleet.open_study(store, spec)  # queues the smoke study's baseline: batch normalization off
        study.enqueue_trial({"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}, user_attrs={"phase": "confirm"})
        running = study.ask()  # the baseline, its value drawn now
        search.suggest(running, spec)
        study.enqueue_trial({"batchnorm": True})
        finished = study.ask()  # the queued confirmation run, finished: never counted
        search.suggest(finished, spec)
        study.tell(finished, 0.5)
        expected = {True: 1, False: 1}
        assert comparison.group_counts(study.get_trials(deepcopy=False), spec) == expected
        # what a claim counts in the database, under the lock, up to min_trials: the same here
        assert comparison.counted_groups(store, spec) == expected
        for _ in range(4):
            study.enqueue_trial({"batchnorm": False})
        assert comparison.group_counts(study.get_trials(deepcopy=False), spec) == {True: 1, False: 5}
        assert comparison.counted_groups(store, spec) == {True: 1, False: 3}  # counting stops at min_trials
    finally:
        store.close()
