"""A trial's epochs through the worker's path: the same pruning decisions and stored rows as plain Optuna."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import fleet, storage, studyfile
from sweeper.fleet import search
from sweeper.fleet.recording import Recorder
from sweeper.fleet.trial_runner import should_stop
from sweeper.storage import urls
from sweeper.storage.records import TrialRecord
from tests.conftest import ROOT

SPEC = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
EPOCHS = 20
TRIALS = 9  # enough for each pruner's rungs and the median pruner's startup to stop some trials
PRUNERS = {
    "hyperband": {"type": "hyperband", "min_resource": 3, "reduction_factor": 3},
    "asha": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 3},
}


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'runner.db'}"


def _curve(number: int) -> list[float]:
    """Learning curves that differ in level and speed, so the pruners' rungs have work to do."""
    level, speed = 0.3 + 0.5 * ((number * 37) % 11) / 10, 2 + (number * 13) % 7
    return [0.1 + level * (1 - math.exp(-epoch / speed)) for epoch in range(1, EPOCHS + 1)]


def _spec(pruner: dict) -> studyfile.StudySpec:
    data = SPEC.model_dump()
    data["pruner"] = pruner
    return studyfile.StudySpec.model_validate(data)


def _sweeper_side(url: str, spec: studyfile.StudySpec, trials: int) -> dict[int, int]:
    """The worker's own claim, report-and-prune and record path; the epoch each trial stopped at."""
    store = storage.connect(urls.resolve_url(url), heartbeat_seconds=10, stale_after_seconds=40)
    try:
        study = fleet.open_study(store, spec)
        recorder = Recorder(store, study, 0, lambda action, _what: action())
        stopped = {}
        for _ in range(trials):
            trial = fleet.claim(store, study, spec, "unit").trial
            fleet.start(trial, study, spec, "unit")
            state, history = TrialState.COMPLETE, {"val_acc": [], "acc": []}
            for epoch, value in enumerate(_curve(trial.number), start=1):
                history["val_acc"].append(value)
                history["acc"].append(value)
                if should_stop(trial, spec, value, epoch):
                    state = TrialState.PRUNED
                    break
            recorder.finish(trial, state, TrialRecord(training={"note": "x"}), history, 0.0)
            stopped[trial.number] = epoch
        return stopped
    finally:
        store.close()


def _optuna_side(trials: int, tmp_path: Path, spec: studyfile.StudySpec) -> dict[int, int]:
    """Plain Optuna: report and ask the pruner after every epoch."""
    study = optuna.create_study(
        study_name=SPEC.name, storage=f"sqlite:///{tmp_path / 'plain.db'}", direction="maximize",
        pruner=search.make_pruner(spec),
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
def test_pruning_only_where_it_can_decide_matches_asking_after_every_epoch(
    url: str, tmp_path: Path, pruner: dict
) -> None:
    spec = _spec(pruner)
    ours = _sweeper_side(url, spec, TRIALS)
    plain = _optuna_side(TRIALS, tmp_path, spec)
    assert ours == plain
    assert any(epoch < EPOCHS for epoch in ours.values()), "the curves should make the pruner stop some trials"
    stored = optuna.load_study(study_name=SPEC.name, storage=urls.resolve_url(url)).get_trials()
    for trial in stored:
        curve = _curve(trial.number)
        assert trial.intermediate_values == {e: pytest.approx(curve[e - 1]) for e in range(1, ours[trial.number] + 1)}
        assert trial.user_attrs["note"] == "x" and len(trial.user_attrs["history"]["val_acc"]) == ours[trial.number]
        if trial.state == TrialState.PRUNED:
            assert trial.value == pytest.approx(curve[ours[trial.number] - 1])  # Optuna's last-reported value
        else:
            assert trial.value == pytest.approx(max(curve)) == trial.user_attrs["best_val_acc"]
