"""What a sweeper study stores, in one place: the study's record and each trial's.

Workers of any version and the report read the same studies, so the attributes Optuna keeps for
sweeper (its user attrs, and the one system attr `enqueue_trial` writes) are the contract between
them. `StudyRecord` and `TrialRecord` are its only readers and writers: every other module uses
their fields, so a renamed key fails here, in one place, instead of silently in a report.

A study record carries the schema version of the sweeper that wrote it. Studies written before
the version existed (sweeper 0.1.0) are version 1, the same format; a study from a newer sweeper,
whose records this one may misread, is refused in one line.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna

from sweeper.errors import SweeperError
from sweeper.studyfile import groups_parameter

SCHEMA_VERSION = 1
"""The format this sweeper writes and reads; a study with a higher one is refused."""


class _HasUserAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReapRecord:
    """The fleet's last look for dead workers' trials, kept in the study so that any worker goes
    on from it: one look per half stale limit for the whole fleet, and a reaper that dies is
    replaced by whichever worker looks next. Times are the database's clock."""

    by: str
    """The worker that looked."""
    at: datetime.datetime
    stale: dict[int, tuple[datetime.datetime, datetime.datetime]] = field(default_factory=dict)
    """Trial id -> (its stale heartbeat, when a look first saw that heartbeat stale)."""
    late: dict[int, datetime.datetime] = field(default_factory=dict)
    """Trial id -> its heartbeat, for every running trial whose beat was older than one beat
    interval: those that beat again by the next look prove how long a live worker's beat can lag."""
    lag: float = 0.0
    """The longest a live worker's beat was seen to lag lately, in seconds (see `reaping`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "at": self.at.isoformat(),
            "stale": {
                str(trial_id): [beat.isoformat(), seen.isoformat()] for trial_id, (beat, seen) in self.stale.items()
            },
            "late": {str(trial_id): beat.isoformat() for trial_id, beat in self.late.items()},
            "lag": self.lag,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReapRecord:
        stale = {
            int(trial_id): (datetime.datetime.fromisoformat(beat), datetime.datetime.fromisoformat(seen))
            for trial_id, (beat, seen) in data.get("stale", {}).items()
        }
        late = {int(trial_id): datetime.datetime.fromisoformat(beat) for trial_id, beat in data.get("late", {}).items()}
        return cls(
            by=data["by"],
            at=datetime.datetime.fromisoformat(data["at"]),
            stale=stale,
            late=late,
            lag=data.get("lag", 0.0),
        )


@dataclass(frozen=True)
class ReapTurn:
    """A worker's word that it is about to look (the database's clock): the others coming due at
    the same moment leave the look to it rather than all queueing for the study lock to make it."""

    by: str
    at: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReapTurn:
        return cls(by=data["by"], at=datetime.datetime.fromisoformat(data["at"]))


@dataclass(frozen=True)
class StudyRecord:
    """A study's own attributes: what created it and what the fleet decided once for everyone."""

    name: str
    schema_version: int = SCHEMA_VERSION
    space_fingerprint: str | None = None
    """Set by sweeper when it creates a study: a study without it was not created by sweeper."""
    budget: int | None = None
    """Search trials, exact across the fleet."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The study file as validated, in JSON form (the report reads the space and sections here)."""
    study_file: str | None = None
    """Where `sweeper export` finds a [model]/[data] study's own code."""
    baselines_enqueued: bool = False
    confirm_trials: int | None = None
    """Confirmation trials queued once the search budget was met; None until then."""
    models_removed: frozenset[int] = frozenset()
    """Trials whose kept model fell out of the best `keep_top` (a finished trial cannot be written to)."""
    last_reap: ReapRecord | None = None
    """The fleet's last look for dead workers' trials (`sweeper.fleet.reaping`)."""
    reap_turn: ReapTurn | None = None
    """The worker about to make the next look."""

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudyRecord:
        return cls.from_attrs(study.study_name, study.user_attrs)

    @classmethod
    def from_attrs(cls, name: str, attrs: Mapping[str, Any]) -> StudyRecord:
        """Read; a study written by a newer sweeper is refused (exit 2) rather than misread."""
        version = attrs.get("schema_version", 1)  # sweeper 0.1.0 wrote version 1's format without a version
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SweeperError(
                f"study {name!r} was written by a newer sweeper (record schema {version}; this one reads "
                f"up to {SCHEMA_VERSION}): upgrade sweeper to read it",
                2,
            )
        return cls(
            name=name,
            schema_version=version,
            space_fingerprint=attrs.get("space_fingerprint"),
            budget=attrs.get("budget"),
            spec=attrs.get("spec", {}),
            study_file=attrs.get("study_file"),
            baselines_enqueued=bool(attrs.get("baselines_enqueued")),
            confirm_trials=attrs.get("confirm_trials"),
            models_removed=frozenset(attrs.get("models_removed", ())),
            last_reap=ReapRecord.from_json(attrs["last_reap"]) if attrs.get("last_reap") else None,
            reap_turn=ReapTurn.from_json(attrs["reap_turn"]) if attrs.get("reap_turn") else None,
        )

    @classmethod
    def if_readable(cls, name: str, attrs: Mapping[str, Any]) -> StudyRecord | None:
        """The record, or None for a study from a newer sweeper: listings pass over it rather than fail."""
        try:
            return cls.from_attrs(name, attrs)
        except SweeperError:
            return None

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as stored: unset ones are left out, as sweeper has always written them."""
        attrs: dict[str, Any] = {"schema_version": self.schema_version}
        optional = {
            "space_fingerprint": self.space_fingerprint,
            "budget": self.budget,
            "spec": self.spec or None,
            "study_file": self.study_file,
            "baselines_enqueued": self.baselines_enqueued or None,
            "confirm_trials": self.confirm_trials,
            "models_removed": sorted(self.models_removed) or None,
            "last_reap": self.last_reap.to_json() if self.last_reap else None,
            "reap_turn": self.reap_turn.to_json() if self.reap_turn else None,
        }
        attrs.update({key: value for key, value in optional.items() if value is not None})
        return attrs

    def write(self, study: optuna.Study, *fields: str) -> None:
        """Store the named fields (all of them if none is named); the caller holds the study lock."""
        attrs = self.to_attrs()
        for key in fields or tuple(attrs):
            if key not in attrs:
                raise ValueError(f"StudyRecord has no set field {key!r}")
            study.set_user_attr(key, attrs[key])

    @property
    def created_by_sweeper(self) -> bool:
        return self.space_fingerprint is not None

    @property
    def space(self) -> dict[str, Any]:
        """The search space as stored: parameter name -> its range or choices."""
        return self.spec.get("space", {})

    @property
    def compared_parameter(self) -> str:
        """The groups compared and confirmed: `[compare] by`, else `[report] group_by`, else batch normalization."""
        return groups_parameter(self.spec)

    def chart_axes(self) -> tuple[str | None, str | None]:
        """The regularizer chart's x parameter and series parameter: the study file's `[report] x` and
        `group_by`, else the tutorial's dropout and batch normalization where the space has them."""
        chosen = self.spec.get("report") or {}
        x = chosen.get("x") or ("dropout" if "dropout" in self.space else None)
        by = chosen.get("group_by") or ("batchnorm" if "batchnorm" in self.space else None)
        return x, by


CONFIRM_PHASE = "confirm"
CONFIRMATION_ATTR = ("phase", CONFIRM_PHASE)
"""The user attr, and its value, that mark a confirmation run (for counts made in the database)."""


@dataclass(frozen=True)
class TrialRecord:
    """A trial's attributes: where it ran, how it went, its model, and what its queue entry gave it.

    Fields sweeper itself reads or writes are named; whatever else the training child reports
    about itself (backend, device, images per second...) is kept as it came, in `training`.
    """

    seed: int | None = None
    worker: str | None = None
    host: str | None = None
    gpu: str | None = None
    history: dict[str, list[float]] | None = None
    """Every epoch's metrics (val_acc, acc, loss, val_loss, epoch_seconds)."""
    best_epoch: int | None = None
    best_val_acc: float | None = None
    final_val_acc: float | None = None
    train_acc_at_best: float | None = None
    overfit_gap: float | None = None
    wall_seconds: float | None = None
    val_images: int | None = None
    prune_reason: str | None = None
    fail_reason: str | None = None
    model_saved: bool | None = None
    model_artifact_id: str | None = None
    model_error: str | None = None
    baseline: bool | None = None
    phase: str | None = None
    """"confirm" for a confirmation run; unset for the search."""
    confirms: int | None = None
    """For a confirmation run: the number of the trial it runs again with another seed."""
    training: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frozen(cls, trial: _HasUserAttrs) -> TrialRecord:
        """Read a trial (finished, running or queued)."""
        return cls.from_attrs(trial.user_attrs)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        named = {key: value for key, value in attrs.items() if key in _TRIAL_FIELDS}
        return cls(**named, training={key: value for key, value in attrs.items() if key not in _TRIAL_FIELDS})

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as stored: unset fields left out, the child's own keys as it reported them."""
        named = {key: getattr(self, key) for key in _TRIAL_FIELDS}
        return {**{key: value for key, value in named.items() if value is not None}, **self.training}

    def merged(self, attrs: Mapping[str, Any]) -> TrialRecord:
        """This record with `attrs` (stored-attribute names, as the child reports them) on top."""
        return TrialRecord.from_attrs({**self.to_attrs(), **attrs})

    def write(self, trial: optuna.trial.Trial) -> None:
        """Store every set field on a running trial."""
        for key, value in self.to_attrs().items():
            trial.set_user_attr(key, value)

    def write_by_id(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        """The same, for a trial this worker does not hold (the reaper's reason)."""
        for key, value in self.to_attrs().items():
            storage.set_trial_user_attr(trial_id, key, value)

    def queued(self) -> TrialRecord:
        """What a retry carries over from its queue entry (a baseline, a confirmation run); the failure stays behind."""
        return TrialRecord(baseline=self.baseline, phase=self.phase, confirms=self.confirms)

    @property
    def is_confirmation(self) -> bool:
        return self.phase == CONFIRM_PHASE

    @property
    def epochs(self) -> int:
        return len((self.history or {}).get("val_acc", []))


_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name != "training")


def is_confirmation(trial: _HasUserAttrs) -> bool:
    """`TrialRecord.is_confirmation` without building the record: one key, for the claim's pass
    over every trial of the study, under the study lock."""
    key, value = CONFIRMATION_ATTR
    return trial.user_attrs.get(key) == value


def model_artifact_id(trial: _HasUserAttrs) -> str:
    """The trial's kept model in the store ("" if it kept none), read as cheaply, for passes over every trial."""
    return trial.user_attrs.get("model_artifact_id") or ""


def for_retry(frozen: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """A failed trial as Optuna's retry callback should copy it: only what its queue entry gave it."""
    frozen.user_attrs = TrialRecord.from_frozen(frozen).queued().to_attrs()
    return frozen


def fixed_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters a queued trial was enqueued with, before it starts (Optuna has no public
    reader: `enqueue_trial` keeps them in the system attr "fixed_params"; the contract test in
    `tests/unit/test_optuna_internals.py` says so if that changes)."""
    return trial.system_attrs.get("fixed_params", {})
