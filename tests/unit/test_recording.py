"""recording: how a trial's end lands in a real study (SQLite here; the storage calls are Optuna's own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import storage
from sweeper.fleet.recording import Recorder, summarize
from sweeper.storage.records import TrialRecord

HISTORY = {"acc": [0.4, 0.7, 0.9], "val_acc": [0.35, 0.6, 0.55], "loss": [1.0, 0.8, 0.5], "val_loss": [1.1, 0.9, 1.0]}


@pytest.fixture
def study(tmp_path: Path) -> Iterator[tuple[storage.Store, optuna.Study]]:
    store = storage.connect(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="recorded", storage=store.storage, direction="maximize")
    yield store, study
    store.close()


def _trial(study: optuna.Study) -> optuna.trial.Trial:
    trial = study.ask()
    trial.suggest_float("dropout", 0.2, 0.5)
    trial.suggest_categorical("batchnorm", [True, False])
    return trial


def _recorder(store: storage.Store, study: optuna.Study, max_retries: int = 2) -> Recorder:
    return Recorder(store, study, max_retries, lambda action, _what: action())


def test_summary_names_the_best_epoch_and_its_overfitting_gap() -> None:
    summary = summarize(HISTORY)
    assert summary["best_epoch"] == 2 and summary["best_val_acc"] == 0.6 and summary["final_val_acc"] == 0.55
    assert summary["overfit_gap"] == pytest.approx(0.7 - 0.6)
    assert summarize({"acc": [0.5], "val_acc": [float("nan")]}) == {}


def test_a_completed_trial_keeps_its_best_val_acc_and_every_attribute(study) -> None:
    store, optuna_study = study
    trial = _trial(optuna_study)
    frozen = _recorder(store, optuna_study).finish(
        trial, TrialState.COMPLETE, TrialRecord(training={"device": "cpu"}), HISTORY, time.monotonic()
    )
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.6
    stored = optuna_study.trials[0]
    assert stored.user_attrs["device"] == "cpu" and stored.user_attrs["best_epoch"] == 2
    assert stored.user_attrs["history"] == HISTORY and stored.user_attrs["wall_seconds"] >= 0


def test_a_completed_trial_without_a_finite_val_acc_is_failed(study) -> None:
    store, optuna_study = study
    history = {"acc": [0.1], "val_acc": [float("nan")], "loss": [float("nan")], "val_loss": [float("nan")]}
    frozen = _recorder(store, optuna_study).finish(
        _trial(optuna_study), TrialState.COMPLETE, TrialRecord(), history, 0.0
    )
    assert frozen.state == TrialState.FAIL and frozen.value is None


def test_a_pruned_trial_has_no_value(study) -> None:
    store, optuna_study = study
    frozen = _recorder(store, optuna_study).finish(_trial(optuna_study), TrialState.PRUNED, TrialRecord(), HISTORY, 0.0)
    assert frozen.state == TrialState.PRUNED and frozen.value is None


def test_a_failure_keeps_its_reason_and_queues_the_same_parameters_a_limited_number_of_times(study) -> None:
    store, optuna_study = study
    recorder = _recorder(store, optuna_study, max_retries=1)
    first = _trial(optuna_study)
    recorder.fail(first, TrialRecord(training={"device": "cpu"}), HISTORY, "training child lost", 0.0)

    failed, queued = optuna_study.get_trials()
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"] == "training child lost"
    assert queued.state == TrialState.WAITING and queued.params == failed.params and not queued.user_attrs

    retry = optuna_study.ask()  # the queued retry, with its fixed parameters
    assert retry.number == queued.number
    retry.suggest_float("dropout", 0.2, 0.5)
    retry.suggest_categorical("batchnorm", [True, False])
    recorder.fail(retry, TrialRecord(), {}, "training child lost again", 0.0)
    assert [t.state for t in optuna_study.get_trials()] == [TrialState.FAIL, TrialState.FAIL], "one retry only"


def test_a_result_written_twice_counts_once(study) -> None:
    """A retried write whose first attempt landed before the connection dropped is not an error."""
    store, optuna_study = study
    recorder = _recorder(store, optuna_study)
    trial = _trial(optuna_study)
    recorder.finish(trial, TrialState.COMPLETE, TrialRecord(), HISTORY, 0.0)
    again = recorder.finish(trial, TrialState.COMPLETE, TrialRecord(), HISTORY, 0.0)
    assert again.state == TrialState.COMPLETE and len(optuna_study.trials) == 1
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        recorder.finish(trial, TrialState.PRUNED, TrialRecord(), HISTORY, 0.0)  # a different end is still refused
