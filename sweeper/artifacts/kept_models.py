"""The trained models of COMPLETE trials, kept as Optuna artifacts: where, upload, the best k, find.

Each COMPLETE trial's model, at the epoch its val_acc comes from, is uploaded with Optuna's
artifacts API; its id is the trial's `model_artifact_id`. Only the best `keep_top` files stay in
the store: a finished trial cannot be written to, so the study's `models_removed` attribute lists
the trials whose file was removed when better ones came.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from sweeper.artifacts.model_stores import ENV, ModelStore, store_errors
from sweeper.errors import SweeperError
from sweeper.storage import records, urls
from sweeper.storage.records import StudyRecord, TrialRecord
from sweeper.storage.studies import value_of
from sweeper.studyfile import Artifacts

log = logging.getLogger("sweeper.kept_models")


NOT_KEPT = (
    f"models are not kept: this PostgreSQL study names no store for them; to keep the best, set {ENV}=file:///path "
    "(a folder every worker, the dashboard and the report can reach) or s3://bucket/prefix, or [artifacts] store "
    "in the study file"
)


def store_url(artifacts: Artifacts, storage_url: str) -> str | None:
    """The study file's store, else `$SWEEPER_ARTIFACTS`, else `NAME-artifacts/` beside a SQLite file.

    None for a PostgreSQL study with neither: its workers may run on many hosts, and no folder is
    known to be shared by all, so models are not kept rather than the sweep refused (`NOT_KEPT`).
    """
    if artifacts.store:
        return artifacts.store
    if os.environ.get(ENV):
        return os.environ[ENV]
    if urls.is_sqlite(storage_url):
        database = Path(make_url(storage_url).database or "sweeper.db").resolve()
        return f"file://{database.with_name(database.stem + '-artifacts')}"
    return None


TUTORIAL_MODEL_BYTES = 10_000_000
"""A kept model of the tutorial's CNN (weights and optimizer state), the guess before any is kept."""


def check_room(models_url: str, storage_url: str, keep_top: int) -> None:
    """Warn at start when the models' folder has less room than `keep_top` models need.

    The default folder sits beside a SQLite database, on its disk: models filling it would leave
    no room to record the trials' results. Sized by the largest model kept so far.
    """
    if not models_url.startswith("file://"):
        return
    folder = Path(models_url.removeprefix("file://"))
    sizes = [entry.stat().st_size for entry in folder.iterdir() if entry.is_file()]
    need = keep_top * max(sizes, default=TUTORIAL_MODEL_BYTES)
    free = shutil.disk_usage(folder).free
    if free >= need:
        return
    database = Path(make_url(storage_url).database or "") if urls.is_sqlite(storage_url) else None
    shared = database is not None and database.parent.exists() and database.parent.stat().st_dev == folder.stat().st_dev
    log.warning(
        "the disk of the model store %s has %.0f MB free, less than the %.0f MB its best %d models need%s; "
        "free space, lower [artifacts] keep_top, or set %s elsewhere",
        folder, free / 1e6, need / 1e6, keep_top, " and shares it with the study's database" if shared else "", ENV,
    )  # fmt: skip


class ModelKeeper:
    """A worker's side of the store: a scratch path per trial, the upload, the trim to the best k."""

    def __init__(self, store: ModelStore, keep_top: int, lock: Callable[[], AbstractContextManager]) -> None:
        self.store, self.keep_top, self._lock = store, keep_top, lock
        self._scratch = tempfile.TemporaryDirectory(prefix="sweeper-models-")

    def path_for(self, trial_number: int) -> Path:
        """Where the training child writes this trial's model."""
        return Path(self._scratch.name) / f"trial-{trial_number}.keras"

    def keep(self, trial: optuna.trial.Trial) -> TrialRecord:
        """Upload the trial's model (it is still RUNNING); the attributes that say how it went."""
        path = self.path_for(trial.number)
        try:
            if not path.is_file():
                return TrialRecord(model_saved=False, model_error="the training process wrote no model")
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=self.store, file_path=str(path), study_or_trial=trial
            )
            return TrialRecord(model_saved=True, model_artifact_id=artifact_id)
        except store_errors() as exc:  # disk full, store gone: the result still counts
            reason = getattr(exc, "strerror", None) or exc
            log.warning("trial %d: model not kept (%s); its result is recorded", trial.number, reason)
            return TrialRecord(model_saved=False, model_error=f"upload failed: {reason}")
        finally:
            path.unlink(missing_ok=True)

    def discard(self, trial_number: int) -> None:
        self.path_for(trial_number).unlink(missing_ok=True)

    def trim(self, study: optuna.Study) -> None:
        """Remove the files of kept models beyond the best `keep_top`, under the study lock."""
        with self._lock():
            self._trim_locked(study)

    def _trim_locked(self, study: optuna.Study) -> None:
        record = StudyRecord.from_study(study)
        kept = sorted(
            (
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if records.model_artifact_id(t)
            ),
            key=lambda t: (-value_of(t), t.number),
        )
        newly = {
            t.number: records.model_artifact_id(t)
            for t in kept[self.keep_top :]
            if t.number not in record.models_removed
        }
        removed = set()
        for number, artifact_id in newly.items():
            try:
                self.store.remove(artifact_id)
            except ArtifactNotFound:
                pass
            except store_errors() as exc:  # the store is down: the next trial's trim tries again
                reason = getattr(exc, "strerror", None) or exc
                log.warning("trial %d: model not removed from the store yet (%s)", number, reason)
                continue
            removed.add(number)
            log.info("trial %d: model removed from the store (not among the best %d)", number, self.keep_top)
        if removed:
            dataclasses.replace(record, models_removed=record.models_removed | removed).write(study, "models_removed")

    def close(self) -> None:
        self._scratch.cleanup()


def kept_model(study: optuna.Study, number: int | None) -> tuple[FrozenTrial, str]:
    """The best COMPLETE trial with a kept model (or trial `number`) and its artifact id; clear errors otherwise."""
    removed = StudyRecord.from_study(study).models_removed
    if number is None:
        complete = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if records.model_artifact_id(t)
        ]
        candidates = [t for t in complete if t.number not in removed]
        if not candidates:
            raise SweeperError(f"study {study.study_name!r} has no kept model yet (no COMPLETE trial saved one)")
        trial = max(candidates, key=lambda t: (value_of(t), -t.number))
    else:
        numbered = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if numbered is None:
            raise SweeperError(f"study {study.study_name!r} has no trial {number}")
        trial = numbered
        if trial.state != TrialState.COMPLETE:
            raise SweeperError(f"trial {number} is {trial.state.name}: only COMPLETE trials keep a model")
        if not records.model_artifact_id(trial):
            reason = TrialRecord.from_frozen(trial).model_error or "it was recorded before models were kept"
            raise SweeperError(f"trial {number} has no kept model ({reason})")
        if number in removed:
            raise SweeperError(
                f"trial {number}'s model was removed from the store when it fell out of the best kept "
                "([artifacts] keep_top); export one of those, e.g. with --best"
            )
    return trial, records.model_artifact_id(trial)
