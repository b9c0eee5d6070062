"""What a study stores, read and written only through `StudyRecord` and `TrialRecord`."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import optuna
import pytest

from sweeper.errors import SweeperError
from sweeper.storage import connect, records, studies
from sweeper.storage.records import SCHEMA_VERSION, StudyRecord, TrialRecord
from tests.conftest import ROOT

RELEASE = ROOT / "tests" / "fixtures" / "v0.1.0"


@pytest.fixture
def released(tmp_path: Path) -> optuna.Study:
    """The study sweeper 0.1.0 wrote, before records carried a schema version."""
    shutil.copy(RELEASE / "smoke.db", tmp_path / "smoke.db")
    return optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'smoke.db'}")


def test_a_study_from_the_last_release_reads_as_schema_1(released: optuna.Study) -> None:
    assert "schema_version" not in released.user_attrs
    record = StudyRecord.from_study(released)
    assert record.schema_version == 1 and record.created_by_sweeper
    assert record.budget == 6 and list(record.space) == ["dropout", "batchnorm", "learning_rate"]
    assert record.compared_parameter == "batchnorm" and record.chart_axes() == ("dropout", "batchnorm")
    assert record.to_attrs() == {**released.user_attrs, "schema_version": 1}


def test_every_trial_of_the_last_release_round_trips_unchanged(released: optuna.Study) -> None:
    for trial in released.get_trials(deepcopy=False):
        record = TrialRecord.from_frozen(trial)
        assert record.to_attrs() == trial.user_attrs, trial.number
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert record.best_val_acc == trial.value and record.epochs == len(trial.user_attrs["history"]["val_acc"])
            assert record.training.get("val_images") is None and record.val_images  # a named field, not the child's


def test_a_study_from_a_newer_sweeper_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    study = optuna.create_study(study_name="future", storage=url)
    StudyRecord("future", schema_version=SCHEMA_VERSION + 1, space_fingerprint="x").write(study)
    store = connect(url)
    try:
        with pytest.raises(SweeperError) as refused:
            studies.load_study(store, "future")
    finally:
        store.close()
    message = str(refused.value)
    assert refused.value.exit_code == 2 and "\n" not in message
    assert f"record schema {SCHEMA_VERSION + 1}" in message and "upgrade sweeper" in message
    assert StudyRecord.if_readable("future", study.user_attrs) is None  # listings pass over it


def test_only_named_fields_are_written(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    StudyRecord("s", budget=5, confirm_trials=4).write(study, "confirm_trials")
    assert study.user_attrs == {"confirm_trials": 4}
    with pytest.raises(ValueError, match="no set field 'study_file'"):
        StudyRecord("s").write(study, "study_file")
    removed = dataclasses.replace(StudyRecord.from_study(study), models_removed=frozenset({3, 1}))
    removed.write(study, "models_removed")
    assert study.user_attrs["models_removed"] == [1, 3] and StudyRecord.from_study(study).models_removed == {1, 3}


def test_a_retry_keeps_only_what_its_queue_entry_gave_it(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}")
    run = TrialRecord(phase=records.CONFIRM_PHASE, confirms=2)
    study.enqueue_trial({"x": 0.5}, user_attrs=run.to_attrs())
    trial = study.ask()
    TrialRecord(worker="w1", fail_reason="lost", training={"device": "cpu"}).write(trial)
    frozen = records.for_retry(study.tell(trial, state=optuna.trial.TrialState.FAIL))
    assert frozen.user_attrs == {"phase": "confirm", "confirms": 2}
    assert TrialRecord.from_frozen(frozen).is_confirmation


def test_the_childs_own_keys_are_kept_as_reported() -> None:
    record = TrialRecord(seed=7).merged({"best_val_acc": 0.5, "backend": "jax", "val_images": 100})
    assert record.best_val_acc == 0.5 and record.val_images == 100 and record.training == {"backend": "jax"}
    assert record.to_attrs() == {"seed": 7, "best_val_acc": 0.5, "val_images": 100, "backend": "jax"}


def test_the_one_key_readers_agree_with_the_records(released: optuna.Study) -> None:
    """The claim's pass over every trial reads one key instead of building records: the same answers."""
    confirming = TrialRecord(phase=records.CONFIRM_PHASE, confirms=1, model_artifact_id="m")
    for attrs in [t.user_attrs for t in released.trials] + [confirming.to_attrs(), {}]:
        holder = optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs=attrs)
        record = TrialRecord.from_frozen(holder)
        assert records.is_confirmation(holder) == record.is_confirmation
        assert records.model_artifact_id(holder) == (record.model_artifact_id or "")
    assert records.is_confirmation(
        optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs=confirming.to_attrs())
    )
