"""`sweeper export` and `sweeper.load_model`: a kept model out of the store, checked against its record.

The check evaluates the model on the study's own validation split (same data, preprocessing and
split seed as in training): the kept model must be the one whose val_acc was recorded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from sweeper.artifacts import kept_models, model_stores
from sweeper.artifacts.model_stores import ModelStore
from sweeper.errors import SweeperError
from sweeper.outfiles import writing
from sweeper.storage import Store, connect, studies, urls
from sweeper.storage.records import StudyRecord
from sweeper.studyfile import StudySpec
from sweeper.training import backends, data, prepared
from sweeper.training.child_output import filtered_stderr

TOLERANCE = 0.001


def _study_and_store(store: Store, study_name: str) -> tuple[optuna.Study, StudyRecord, StudySpec, ModelStore]:
    study = studies.load_study(store, study_name)
    record = StudyRecord.from_study(study)
    spec = StudySpec.model_validate(record.spec)
    models_url = kept_models.store_url(spec.artifacts, store.url)
    if models_url is None:
        raise SweeperError(f"study {study_name!r} kept no models: {kept_models.NOT_KEPT}", 2)
    return study, record, spec, model_stores.open_store(models_url, create=False)


def _download(models: ModelStore, artifact_id: str, out: Path, number: int) -> None:
    try:
        with writing(out):
            optuna.artifacts.download_artifact(artifact_store=models, file_path=str(out), artifact_id=artifact_id)
    except optuna.artifacts.exceptions.ArtifactNotFound:
        raise SweeperError(f"trial {number}'s model file is missing from the store") from None


def export(
    url: str, study_name: str, number: int | None, out: Path, *, evaluate: bool, data_dir: str | None, verbose: bool
) -> str:
    """Write the kept model to `out`; unless told not to, re-evaluate it. The line to print."""
    store = connect(url, create=False)
    try:
        study, record, spec, models = _study_and_store(store, study_name)
        trial, artifact_id = kept_models.kept_model(study, number)
    finally:
        store.close()
    _download(models, artifact_id, out, trial.number)
    if not evaluate:
        return f"trial {trial.number}: val_acc recorded {trial.value:.4f} (not re-evaluated) -> {out}"
    study_file = Path(record.study_file or "study.toml")
    if (spec.model or spec.data) and not study_file.is_file():
        return f"trial {trial.number}: val_acc recorded {trial.value:.4f} (not re-evaluated: {study_file} is gone) -> {out}"
    measured = evaluate_model(out, spec, study_file, data_dir, verbose)
    line = f"trial {trial.number}: val_acc recorded {trial.value:.4f}, re-evaluated {measured:.4f} -> {out}"
    if abs(measured - studies.value_of(trial)) > TOLERANCE:
        raise SweeperError(f"{line}\nthe kept model does not reproduce its recorded val_acc (tolerance {TOLERANCE})", 1)
    return line


def evaluate_model(path: Path, spec: StudySpec, study_file: Path, data_dir: str | None, verbose: bool) -> float:
    """val_acc of the saved model on the study's validation split."""
    folder = data.prepare_for(spec, study_file, data.resolve_data_dir(data_dir), backends.resolve(None))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with filtered_stderr(verbose):
            import keras

            # Uncompiled: a user's model may carry its own loss, which loading could not rebuild;
            # accuracy is the argmax against the labels, as Keras' accuracy metric counts it.
            model = keras.models.load_model(path, compile=False)
            dataset = prepared.open_prepared(folder)
            predicted = model.predict(dataset.x_val, batch_size=spec.training.batch_size, verbose=0)
    finally:
        data.discard(folder)
    return float(np.mean(np.argmax(predicted, axis=-1) == np.asarray(dataset.y_val)))


def load_model(study_name: str, trial: int | None = None, storage: str | None = None) -> Any:
    """The compiled `keras.Model` of the study's best kept model, or of trial number `trial`."""
    store = connect(urls.resolve_url(storage), create=False)
    try:
        study, _record, _spec, models = _study_and_store(store, study_name)
        frozen, artifact_id = kept_models.kept_model(study, trial)
    finally:
        store.close()
    import keras

    with tempfile.TemporaryDirectory(prefix="sweeper-model-") as folder:
        path = Path(folder) / "model.keras"
        _download(models, artifact_id, path, frozen.number)
        return keras.models.load_model(path)
