"""Workers sharing one study: open it, claim trials under the study lock, count the budget.

Claims happen under the study lock (a PostgreSQL advisory lock; a file lock beside a SQLite
file), so the budget is exact however many workers share the study. A claim cut short between
creating its trial and its first heartbeat (an outage, a kill) is taken over by the next claim.
Every claim of the fleet waits for that one lock, so what a claim does there is counted in the
database and never grows with the study's history: a study keeps as many workers busy as
claims per second times the trial's length. Dead workers' trials are reaped by `reaping`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.errors import SweeperError
from sweeper.fleet import comparison, confirmation, search
from sweeper.storage import Store, optuna_internals
from sweeper.storage.records import StudyRecord, TrialRecord
from sweeper.studyfile import StudySpec

log = logging.getLogger("sweeper.fleet")
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
METRIC_NAME = "val_acc"


class SpaceChangedError(SweeperError):
    """The study file's search space differs from the one the study was created with."""


SETTINGS = ("training", "data", "model", "fleet", "confirm", "compare")
"""The sections that say how a trial trains and is counted: every trial of a study must share them."""


def open_study(
    store: Store,
    spec: StudySpec,
    *,
    allow_space_change: bool = False,
    allow_budget_change: bool = False,
    allow_settings_change: bool = False,
) -> optuna.Study:
    """Create the study or join it; enqueue the baselines exactly once, whoever comes first."""
    with store.lock(spec.name, "opening the study"), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=store.storage,
            study_name=spec.name,
            direction="maximize",
            sampler=search.make_sampler(spec),
            pruner=search.make_pruner(spec),
            load_if_exists=True,
        )
        stored = StudyRecord.from_study(study)
        fingerprint = spec.space_fingerprint()
        if stored.created_by_sweeper and stored.space_fingerprint != fingerprint and not allow_space_change:
            changes = "; ".join(_differences(stored.space, spec.space.dump())) or "fingerprints differ"
            raise SpaceChangedError(
                f"study {spec.name!r} was created with another search space ({changes}).\n"
                "Give the study a new [study] name to start afresh, or pass --allow-space-change to continue "
                "this one with the new space (past trials keep their old values)."
            )
        if stored.spec and not allow_settings_change:
            _refuse_other_settings(spec, stored.spec)
        if stored.budget is not None and stored.budget != spec.study.budget and not allow_budget_change:
            raise SweeperError(
                f"study {spec.name!r} has a budget of {stored.budget} trials; this file says {spec.study.budget}.\n"
                "Pass --allow-budget-change to change the running study's budget, or give the study a new [study] name.",
                2,
            )
        record = dataclasses.replace(
            stored,
            space_fingerprint=fingerprint,
            budget=spec.study.budget,
            spec={**spec.model_dump(mode="json", exclude={"space"}), "space": spec.space.dump()},
            study_file=str(spec.source) if spec.source is not None else stored.study_file,
            baselines_enqueued=True,
        )
        record.write(study, "schema_version", "space_fingerprint", "budget", "spec")
        if spec.source is not None:  # where `sweeper export` finds a [model]/[data] study's own code
            record.write(study, "study_file")
        if study.metric_names != [METRIC_NAME]:  # optuna-dashboard and `optuna trials` show it by name
            study.set_metric_names([METRIC_NAME])
        if not stored.baselines_enqueued:
            for baseline in spec.baselines:
                study.enqueue_trial(dict(baseline), user_attrs=TrialRecord(baseline=True).to_attrs())
            record.write(study, "baselines_enqueued")
    return study


def _refuse_other_settings(spec: StudySpec, stored: dict[str, Any]) -> None:
    """A second study file of the same name that trains or counts differently would mix its trials
    with the study's; a key the stored study lacks (written by an older sweeper) is not a change."""
    now = spec.model_dump(mode="json", include=set(SETTINGS))
    changes = [
        change
        for section in SETTINGS
        for change in _differences(stored.get(section), now.get(section), section, new_keys_count=False)
    ]
    if changes:
        raise SweeperError(
            f"study {spec.name!r} was created with other settings ({'; '.join(changes)}).\n"
            "Give the study a new [study] name to start afresh, or pass --allow-settings-change to continue "
            "this one with the new settings (past trials keep how they were trained).",
            2,
        )


def _differences(before: Any, after: Any, path: str = "space", *, new_keys_count: bool = True) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after) if new_keys_count else set(before))
        return [
            d
            for key in keys
            for d in _differences(before.get(key), after.get(key), f"{path}.{key}", new_keys_count=new_keys_count)
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


@dataclass(frozen=True)
class Progress:
    finished: int
    running: int
    budget: int
    waiting: int
    """Queued trials (baselines, group assignments, retries, confirmation runs) not yet claimed."""
    confirmation_pending: bool = False
    """Confirmation runs are asked for and not yet queued: when the search is done, they come next."""

    @property
    def done(self) -> bool:
        return self.finished >= self.budget and not self.confirmation_pending

    @property
    def full(self) -> bool:
        return self.finished + self.running >= self.budget


def progress(store: Store, study: optuna.Study, spec: StudySpec) -> Progress:
    """Finished, running and queued trials against the whole budget, counted in the database.

    The study's record is read before the counts: its budget then never lags them (the counts
    only grow), so a worker reading while another queues the confirmation runs cannot take the
    search's end for the study's.
    """
    record = StudyRecord.from_study(study)
    counts = optuna_internals.trial_counts(store, spec.name)
    return Progress(
        finished=sum(counts[state] for state in FINISHED_STATES),
        running=counts[TrialState.RUNNING],
        budget=confirmation.total_budget(record, spec),
        waiting=counts[TrialState.WAITING],
        confirmation_pending=confirmation.pending(record, spec),
    )


class ClaimStatus(enum.Enum):
    TRIAL = "trial"
    """A trial is this worker's to run."""
    FULL = "full"
    """Every trial of the budget is finished or running; one may yet fail and need a retry."""
    DONE = "done"
    """The budget is met."""


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    progress: Progress
    trial: optuna.trial.Trial | None = None


def claim(store: Store, study: optuna.Study, spec: StudySpec, name: str) -> Claim:
    """Under the study lock: take over a claim cut short, or take a trial if the budget allows;
    either way with its first heartbeat. Its parameters come next, from `start`.

    Nothing here reads the study's history: the budget and the groups are counted in the database
    and the trial is taken without `study.ask()`, whose pass over the cached trials loaded a new
    worker's whole history under the lock (4.5 s at 10,000 trials).
    """
    settled = _settled(store, study, spec)
    if settled is not None:
        return settled
    with store.lock(spec.name, "claiming a trial"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with optimize"
        abandoned = optuna_internals.abandoned_claim(store, spec.name)
        if abandoned is not None:  # already counted as running: the budget stays exact
            store.storage.record_heartbeat(abandoned)
            trial = optuna_internals.trial_by_id(study, abandoned)
            now = progress(store, study, spec)
            log.info("%s: took over trial %d, whose claim was cut short", name, trial.number)
        else:
            now = progress(store, study, spec)
            if now.confirmation_pending and now.finished >= now.budget:
                queued = confirmation.enqueue(study, spec)
                log.info("%s: search budget met; %d confirmation trial(s) queued", name, queued)
                now = progress(store, study, spec)
            if now.done:
                return Claim(ClaimStatus.DONE, now)
            if now.full:
                return Claim(ClaimStatus.FULL, now)
            search_open = now.finished + now.running + now.waiting < spec.study.budget
            if spec.compare is not None and search_open and not now.waiting:
                comparison.assign(study, spec, comparison.counted_groups(store, spec))
            trial = _next_trial(store, study)
            store.storage.record_heartbeat(optuna_internals.trial_id(trial))
    return Claim(ClaimStatus.TRIAL, now, trial)


def _settled(store: Store, study: optuna.Study, spec: StudySpec) -> Claim | None:
    """DONE or FULL, when that is sure without the lock: then the worker waits without queueing
    for it (at a study's end every worker asks again each poll, more often than claims come).
    A claim cut short to take over, or confirmation to queue, needs the lock."""
    now = progress(store, study, spec)
    if not now.full or now.confirmation_pending:
        return None
    if optuna_internals.abandoned_claim(store, spec.name) is not None:
        return None
    return Claim(ClaimStatus.DONE if now.done else ClaimStatus.FULL, now)


def _next_trial(store: Store, study: optuna.Study) -> optuna.trial.Trial:
    """What `study.ask()` gives, the oldest queued trial or else a new one, read by id: the study
    lock already keeps other workers from taking the same queued trial."""
    rdb = store.storage
    for queued in optuna_internals.waiting_trial_ids(store, study.study_name):
        try:
            if rdb.set_trial_state_values(queued, state=TrialState.RUNNING):
                return optuna_internals.trial_by_id(study, queued)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # a plain Optuna script sharing the study took and finished it
    return optuna_internals.trial_by_id(study, rdb.create_new_trial(rdb.get_study_id_from_name(study.study_name)))


def start(trial: optuna.trial.Trial, study: optuna.Study, spec: StudySpec, name: str) -> None:
    """A claimed trial's parameters and its worker's name; safe to retry on the same trial.

    Outside the lock, so claims stay short (TPE reads the whole history, and a new worker's first
    read loads it all); the per-trial seed and TPE's constant liar keep concurrent workers from
    choosing alike. A step of its own, so that an outage here is retried on the trial already
    held, not answered with another claim. Reading the trials first brings the claimed trial into
    the study's cache of them, where Optuna looks a trial up to store its parameters.
    """
    study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    search.seed_trial(study.sampler, spec, trial.number)
    search.suggest(trial, spec)
    TrialRecord(worker=name).write(trial)  # who holds it, visible while it runs
