"""The worker's batched writes: the same pruning decisions and the same stored rows as Optuna's own calls."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import search, storage, studyfile
from sweeper.worker import Worker, open_study
from tests.conftest import ROOT

SPEC = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
EPOCHS = 30


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'reporting.db'}"


def _curve(number: int) -> list[float]:
    """Learning curves that differ in level and speed, so Hyperband's rungs have work to do."""
    level, speed = 0.3 + 0.5 * ((number * 37) % 11) / 10, 2 + (number * 13) % 7
    return [0.1 + level * (1 - math.exp(-epoch / speed)) for epoch in range(1, EPOCHS + 1)]


PRUNERS = {
    "hyperband": {"type": "hyperband", "min_resource": 3, "reduction_factor": 3},
    "asha": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 3},
}


def _spec(pruner: dict, report_seconds: float) -> studyfile.StudySpec:
    data = SPEC.model_dump()
    data["pruner"], data["fleet"]["report_seconds"] = pruner, report_seconds
    return studyfile.StudySpec.model_validate(data)


def _worker(url: str, tmp_path: Path, report_seconds: float, pruner: dict = PRUNERS["hyperband"]) -> Worker:
    spec = _spec(pruner, report_seconds)
    store = storage.connect(storage.resolve_url(url), heartbeat_seconds=10, stale_after_seconds=40)
    return Worker(spec, store, open_study(store, spec), tmp_path, child=object())


def _sweeper_side(worker: Worker, trials: int) -> dict[int, int]:
    """Run the worker's own report/prune/record path; the epoch each trial stopped at."""
    stopped = {}
    for _ in range(trials):
        trial = worker._claim()
        curve, state, history = _curve(trial.number), TrialState.COMPLETE, {"val_acc": [], "acc": []}
        for epoch, value in enumerate(curve, start=1):
            history["val_acc"].append(value)
            history["acc"].append(value)
            if worker._report(trial, value, epoch):
                state = TrialState.PRUNED
                break
        worker._record(
            trial, {"note": "x"}, history, 0.0, state, max(history["val_acc"]) if state == TrialState.COMPLETE else None
        )
        stopped[trial.number] = epoch
    return stopped


def _optuna_side(trials: int, tmp_path: Path, pruner: dict) -> dict[int, int]:
    """Plain Optuna: report and ask the pruner after every epoch."""
    study = optuna.create_study(
        study_name=SPEC.name, storage=f"sqlite:///{tmp_path / 'plain.db'}", direction="maximize",
        pruner=search.make_pruner(_spec(pruner, 1.0)),
    )  # fmt: skip
    stopped = {}
    for _ in range(trials):
        trial = study.ask()
        for epoch, value in enumerate(_curve(trial.number), start=1):
            trial.report(value, epoch)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, max(_curve(trial.number)))
        stopped[trial.number] = epoch
    return stopped


@pytest.mark.parametrize("pruner", PRUNERS.values(), ids=PRUNERS.keys())
def test_batched_reports_prune_exactly_like_trial_report(url: str, tmp_path: Path, pruner: dict) -> None:
    """Also checks that asking the pruner only where `search.can_prune_at` says changes nothing."""
    worker = _worker(url, tmp_path, report_seconds=3600, pruner=pruner)  # nothing written before each result
    try:
        ours = _sweeper_side(worker, 24)
    finally:
        worker.store.close()
    plain = _optuna_side(24, tmp_path, pruner)
    assert ours == plain
    assert any(epoch < EPOCHS for epoch in ours.values()), "the curves should make the pruner stop some trials"
    stored = optuna.load_study(study_name=SPEC.name, storage=storage.resolve_url(url)).get_trials()
    for trial in stored:
        curve = _curve(trial.number)
        assert trial.intermediate_values == {e: pytest.approx(curve[e - 1]) for e in range(1, ours[trial.number] + 1)}
        assert trial.user_attrs["note"] == "x" and len(trial.user_attrs["history"]["val_acc"]) == ours[trial.number]
        if trial.state == TrialState.PRUNED:
            assert trial.value == pytest.approx(curve[ours[trial.number] - 1])  # Optuna's last-reported value


def test_epochs_reach_the_storage_within_report_seconds_and_before_the_result(url: str, tmp_path: Path) -> None:
    deferred, immediate = _worker(url, tmp_path, report_seconds=3600), _worker(url, tmp_path, report_seconds=0)
    database = optuna.storages.RDBStorage(storage.resolve_url(url))  # what another process would read
    try:
        stored = lambda trial: database.get_trial(trial._trial_id).intermediate_values  # noqa: E731
        slow, fast = deferred._claim(), immediate._claim()
        assert database.get_trial(slow._trial_id).params == slow.params  # the claim writes the parameters at once
        for epoch in (1, 2):  # epochs 1 and 2 are below the first rung (3): no pruning check writes them
            deferred._report(slow, 0.1 * epoch, epoch)
            immediate._report(fast, 0.1 * epoch, epoch)
        assert stored(slow) == {} and stored(fast) == {1: 0.1, 2: 0.2}
        deferred._record(slow, {}, {"val_acc": [0.1, 0.2], "acc": [0.1, 0.2]}, 0.0, TrialState.COMPLETE, 0.2)
        assert stored(slow) == {1: 0.1, 2: 0.2}
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # a finished trial stays as it was
            slow.report(0.3, 3)
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            slow.set_user_attr("late", True)
        assert stored(slow) == {1: 0.1, 2: 0.2} and "late" not in database.get_trial(slow._trial_id).user_attrs
    finally:
        deferred.store.close()
        immediate.store.close()
        database.engine.dispose()
