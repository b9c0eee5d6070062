"""Workers sharing one study: open it, claim trials under the study lock, count the budget, reap the dead.

Claims happen under the study lock (a PostgreSQL advisory lock; a file lock beside a SQLite
file), so the budget is exact however many workers share the study. A claim cut short between
creating its trial and its first heartbeat (an outage, a kill) is taken over by the next claim.
Reaping fails and queues again the trials whose heartbeat lapsed, seen twice a stale limit
apart (`Reaper`).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.errors import SweeperError
from sweeper.fleet import comparison, confirmation, search
from sweeper.fleet.heartbeat import Reach
from sweeper.storage import Store, optuna_internals, records
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

    @property
    def done(self) -> bool:
        return self.finished >= self.budget

    @property
    def full(self) -> bool:
        return self.finished + self.running >= self.budget


def progress(study: optuna.Study, budget: int) -> Progress:
    """Finished and running trials, as the storage holds them now (unfinished trials are always re-read)."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return Progress(finished=len(trials) - running, running=running, budget=budget)


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


class Reaper:
    """Fails (and queues again) the trials of workers that stopped beating.

    A slow storage is not a dead worker: a held SQLite write lock, a busy PostgreSQL or an outage
    delays every live worker's beat. So a trial is reaped only when two looks, a whole stale limit
    apart, find the same heartbeat, older than the stale limit, and the storage answered this
    worker all the while; a beat landing between the looks clears it. Looks are due every half
    stale limit, once the storage has answered this worker for a whole stale limit, and a look is
    asked for again when an outage cut it short: its retry never acts on what came before the
    outage. A dead worker's trial is therefore reaped two to two and a half stale limits after
    its last beat.
    """

    def __init__(self, store: Store, study: optuna.Study, spec: StudySpec, reach: Reach, name: str) -> None:
        self._store, self._study, self._spec, self._reach, self._name = store, study, spec, reach, name
        self._next = 0.0
        self._first_seen: dict[int, tuple[datetime.datetime, float]] = {}
        """trial id -> (the stale heartbeat seen, when it was first seen)"""

    def due(self) -> bool:
        stale = self._spec.fleet.stale_after_seconds
        return time.monotonic() >= self._next and self._reach.steady_for(stale)

    def reap(self) -> None:
        """Take the study lock and reap, if still due."""
        with self._store.lock(self._spec.name, "reaping"):
            self.reap_locked()

    def reap_locked(self) -> None:
        """Look, and reap the trials seen stale twice; the caller holds the study lock."""
        if not self.due():  # a retry after an outage: the live workers have had no time to beat
            return
        stale = self._spec.fleet.stale_after_seconds
        looked = time.monotonic()
        self._next = looked + stale / 2
        now, beats = optuna_internals.running_heartbeats(self._store, self._spec.name)
        first_seen = {}
        for trial_id, beat in beats.items():
            if (now - beat).total_seconds() <= stale:
                continue
            first = self._first_seen.get(trial_id)
            if first is None or first[0] != beat or not self._reach.steady_since(first[1]):
                first_seen[trial_id] = (beat, looked)
            elif looked - first[1] >= stale:
                self._fail(trial_id, (now - beat).total_seconds())
            else:
                first_seen[trial_id] = first
        self._first_seen = first_seen

    def _fail(self, trial_id: int, silent_for: float) -> None:
        rdb = self._store.storage
        reason = f"reaped by {self._name}: no heartbeat for {silent_for:.0f}s (stale after {self._spec.fleet.stale_after_seconds}s)"
        try:
            TrialRecord(fail_reason=reason).write_by_id(rdb, trial_id)
            if not rdb.set_trial_state_values(trial_id, state=TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # its worker finished it after all
        frozen = rdb.get_trial(trial_id)
        log.warning("%s: trial %d failed and queued again: %s", self._name, frozen.number, reason)
        queue_retry = rdb.get_heartbeat_stale_trial_callback()
        if queue_retry is not None:
            queue_retry(self._study, records.for_retry(frozen))


def claim(store: Store, study: optuna.Study, spec: StudySpec, reaper: Reaper, name: str) -> Claim:
    """Under the study lock: take over a claim cut short, or reap if due, then take a trial if the
    budget allows; either way with its first heartbeat. Its parameters come next, from `start`.
    """
    with store.lock(spec.name, "claiming a trial"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with optimize"
        abandoned = optuna_internals.abandoned_claim(store, spec.name)
        if abandoned is not None:  # already counted as running: the budget stays exact
            store.storage.record_heartbeat(abandoned)
            trial = optuna_internals.trial_by_id(study, abandoned)
            now = progress(study, confirmation.total_budget(study, spec))
            log.info("%s: took over trial %d, whose claim was cut short", name, trial.number)
        else:
            if reaper.due():
                reaper.reap_locked()
            now = progress(study, confirmation.total_budget(study, spec))
            if now.done and confirmation.pending(study, spec):
                queued = confirmation.enqueue(study, spec)
                log.info("%s: search budget met; %d confirmation trial(s) queued", name, queued)
                now = progress(study, confirmation.total_budget(study, spec))
            if now.done:
                return Claim(ClaimStatus.DONE, now)
            if now.full:
                return Claim(ClaimStatus.FULL, now)
            comparison.assign(study, spec)
            trial = study.ask()  # a new trial, or the next queued baseline, group assignment or retry
            store.storage.record_heartbeat(optuna_internals.trial_id(trial))
    return Claim(ClaimStatus.TRIAL, now, trial)


def start(trial: optuna.trial.Trial, study: optuna.Study, spec: StudySpec, name: str) -> None:
    """A claimed trial's parameters and its worker's name; safe to retry on the same trial.

    Outside the lock, so claims stay short (TPE reads the whole history); the per-trial seed and
    TPE's constant liar keep concurrent workers from choosing alike. A step of its own, so that an
    outage here is retried on the trial already held, not answered with another claim.
    """
    search.seed_trial(study.sampler, spec, trial.number)
    search.suggest(trial, spec)
    TrialRecord(worker=name).write(trial)  # who holds it, visible while it runs
