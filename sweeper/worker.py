"""The worker: claims trials from the shared study, has its child train them, and records the results.

Only this process talks to the database. Claims happen under the study lock, so the budget is
exact however many workers share the study; a heartbeat marks the running trial alive, and
trials whose worker vanished are failed and queued again by whichever worker looks next.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from sweeper import backends, search, storage
from sweeper.errors import SweeperError
from sweeper.gpus import GpuSlot
from sweeper.heartbeat import Heartbeat, Reach
from sweeper.heldtrial import HeldTrialStorage
from sweeper.storage import Store
from sweeper.studyfile import StudySpec
from sweeper.training import ChildLost, Job, TrainingProcess

log = logging.getLogger("sweeper.worker")

T = TypeVar("T")
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3


class Outcome(enum.Enum):
    """How a trial ended for this worker; only FAILED counts towards stopping a failing worker."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    """The training failed: the child crashed, raised, or its results were unusable."""
    LOST = "lost"
    """Another worker reaped the trial (its heartbeat had lapsed); its retry runs instead."""
    STOPPED = "stopped"


class SpaceChangedError(SweeperError):
    """The study file's search space differs from the one the study was created with."""


def open_study(
    store: Store, spec: StudySpec, *, allow_space_change: bool = False, allow_budget_change: bool = False
) -> optuna.Study:
    """Create the study or join it; enqueue the baselines exactly once, whoever comes first."""
    with store.lock(spec.name), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=HeldTrialStorage(store.storage),
            study_name=spec.name,
            direction="maximize",
            sampler=search.make_sampler(spec),
            pruner=search.make_pruner(spec),
            load_if_exists=True,
        )
        attrs = study.user_attrs
        fingerprint = spec.space_fingerprint()
        if "space_fingerprint" in attrs and attrs["space_fingerprint"] != fingerprint and not allow_space_change:
            before = attrs.get("spec", {}).get("space", {})
            changes = "; ".join(_differences(before, spec.space.model_dump(mode="json"))) or "fingerprints differ"
            raise SpaceChangedError(
                f"study {spec.name!r} was created with another search space ({changes}).\n"
                "Give the study a new [study] name to start afresh, or pass --allow-space-change to continue "
                "this one with the new space (past trials keep their old values)."
            )
        budget = attrs.get("budget")
        if budget is not None and budget != spec.study.budget and not allow_budget_change:
            raise SweeperError(
                f"study {spec.name!r} has a budget of {budget} trials; this file says {spec.study.budget}.\n"
                "Pass --allow-budget-change to change the running study's budget, or give the study a new [study] name.",
                2,
            )
        study.set_user_attr("space_fingerprint", fingerprint)
        study.set_user_attr("budget", spec.study.budget)
        study.set_user_attr("spec", spec.model_dump(mode="json"))
        if not attrs.get("baselines_enqueued"):
            for baseline in spec.baselines:
                study.enqueue_trial(baseline.model_dump(), user_attrs={"baseline": True})
            study.set_user_attr("baselines_enqueued", True)
    return study


def _differences(before: Any, after: Any, path: str = "space") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            d
            for key in sorted(set(before) | set(after))
            for d in _differences(before.get(key), after.get(key), f"{path}.{key}")
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


@dataclass
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


def progress(store: Store, study: optuna.Study, budget: int) -> Progress:
    """Finished and running trials, counted by the database (reading them all costs ~10x more)."""
    counts = storage.count_trial_states(store, study._study_id)
    return Progress(
        finished=sum(counts.get(state.name, 0) for state in FINISHED_STATES),
        running=counts.get(TrialState.RUNNING.name, 0),
        budget=budget,
    )


@dataclass
class Worker:
    spec: StudySpec
    store: Store
    study: optuna.Study
    data_folder: Path
    n_trials: int | None = None
    gpu: GpuSlot = field(default_factory=lambda: GpuSlot(None))
    backend: str = backends.DEFAULT
    stop: threading.Event = field(default_factory=threading.Event)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    child: Any = None
    """The training process handle; benchmarks pass a stand-in with the same methods."""
    _stop_reason: str = ""
    _next_reap: float = 0.0

    def __post_init__(self) -> None:
        fleet = self.spec.fleet
        self._child = self.child or TrainingProcess(
            self.data_folder, fleet.trials_per_child, fleet.child_growth_mb, self.gpu.child_env(self.backend)
        )
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=fleet.max_retries)
        self._reach = Reach()
        self._heartbeat = Heartbeat(self.store.storage, fleet.heartbeat_seconds, self._reach, self.store.url)

    @property
    def trial_storage(self) -> HeldTrialStorage:
        """The study's storage: it keeps the running trial's writes until `flush()` or the trial's end."""
        assert isinstance(self.study._storage, HeldTrialStorage)
        return self.study._storage

    def request_stop(self, reason: str) -> None:
        """Finish cleanly: the current trial is marked FAIL and queued again, then the worker exits 0.

        If the storage does not answer within the stop grace, exit anyway: the trial's heartbeat
        then lapses and another worker (or this one, restarted) reaps and retries it.
        """
        if self.stop.is_set():
            return
        self._stop_reason = reason
        self.stop.set()
        watchdog = threading.Timer(self.spec.fleet.stop_grace_seconds, self._force_exit)
        watchdog.daemon = True
        watchdog.start()

    def _force_exit(self) -> None:
        log.warning("%s: storage did not answer within the stop grace; exiting now", self.name)
        self._child.kill()
        os._exit(0)

    def _db(self, action: Callable[[], T], what: str) -> T:
        return storage.retrying(action, what, url=self.store.url, on_transient=self._reach.failed)

    def run(self) -> int:
        """Claim and run trials until the budget is met, N trials are done, or a stop is asked."""
        ran = failures = 0
        self._heartbeat.start()
        try:
            while not self.stop.is_set() and (self.n_trials is None or ran < self.n_trials):
                trial = self._db(self._claim, "claiming a trial")
                if trial is None:
                    break
                if isinstance(trial, Progress):
                    self.stop.wait(self.spec.fleet.poll_seconds)  # a running trial may yet fail
                    continue
                outcome = self._run_trial(trial)
                ran += 1
                if outcome != Outcome.LOST:
                    failures = failures + 1 if outcome == Outcome.FAILED else 0
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    log.error("%s: %d trials in a row failed; stopping (see their fail_reason)", self.name, failures)
                    return 1
        finally:
            self._heartbeat.stop()
            self._child.close()
        if self.stop.is_set():
            log.info("%s: stopped (%s)", self.name, self._stop_reason)
        return 0

    def _claim(self) -> optuna.trial.Trial | Progress | None:
        """Under the study lock: reap dead workers' trials if due, then take a trial if the budget allows."""
        with self.store.lock(self.spec.name), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with optimize"
            if self._reap_due():
                self._reap_unlocked()
            now = progress(self.store, self.study, self.spec.study.budget)
            if now.done:
                log.info(
                    "%s: study %s is complete (%d/%d trials finished)",
                    self.name,
                    self.spec.name,
                    now.finished,
                    now.budget,
                )
                return None
            if now.full:
                return now
            trial = self.study.ask()  # a new trial, or the next queued baseline or retry
            self.store.storage.record_heartbeat(trial._trial_id)
            self._heartbeat.hold(trial._trial_id)
        # Sampling (TPE reads the whole history) happens outside the lock, so claims stay short;
        # the per-trial seed and constant_liar keep concurrent workers from choosing alike.
        search.seed_trial(self.study.sampler, self.spec, trial.number)
        search.suggest(trial, self.spec)
        trial.set_user_attr("worker", self.name)  # who holds it, visible while it runs
        self.trial_storage.flush()  # the parameters count for other workers' samplers (constant liar) from now on
        return trial

    def _run_trial(self, trial: optuna.trial.Trial) -> Outcome:
        try:
            state = self._train_and_record(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker reaped this trial (and queued its retry): this worker's heartbeat
            # lapsed for a whole stale limit. Abandon it rather than write to a finished trial.
            self._child.kill()
            log.warning(
                "%s: trial %d was reaped by another worker (no heartbeat from here for %ss); its retry runs instead",
                self.name, trial.number, self.spec.fleet.stale_after_seconds,
            )  # fmt: skip
            return Outcome.LOST
        finally:
            self._heartbeat.release()
        if self.stop.is_set() and state == TrialState.FAIL:
            return Outcome.STOPPED
        return {TrialState.COMPLETE: Outcome.COMPLETE, TrialState.PRUNED: Outcome.PRUNED}.get(state, Outcome.FAILED)

    def _train_and_record(self, trial: optuna.trial.Trial) -> TrialState:
        fleet, training = self.spec.fleet, self.spec.training
        seed = self.spec.sampler.seed + trial.number
        params = {name: trial.params[name] for name in self.spec.space.distributions()}
        log.info("%s: trial %d started: %s", self.name, trial.number, search.format_params(params))
        started = time.monotonic()
        self._child.start(
            Job(params, training.epochs, training.batch_size, seed, training.jit_compile, training.mixed_precision)
        )
        history: dict[str, list[float]] = defaultdict(list)
        attrs: dict[str, Any] = {"seed": seed, "worker": self.name, "host": socket.gethostname(), "gpu": self.gpu.label}
        pruned_because = ""
        while True:
            if self.stop.is_set():
                self._child.kill()
                return self._fail(trial, attrs, history, f"worker stopped ({self._stop_reason})", started)
            message = self._child.receive(timeout=min(0.5, fleet.poll_seconds))
            if self._reap_due():  # so a lone worker still revives trials of workers that died
                self._db(self._reap, "reaping stale trials")
            if message is None:
                continue
            if isinstance(message, ChildLost):
                return self._fail(trial, attrs, history, message.reason, started)
            kind, payload = message
            if kind == "error":
                self._child.kill()
                return self._fail(trial, attrs, history, payload, started)
            if kind == "done":
                attrs.update(payload)
                state = TrialState.PRUNED if pruned_because else TrialState.COMPLETE
                if pruned_because:
                    attrs["prune_reason"] = pruned_because
                return self._finish(trial, state, attrs, history, started)
            for key in ("acc", "loss", "val_acc", "val_loss"):
                history[key].append(payload.get(key, math.nan))
            history["epoch_seconds"].append(payload["seconds"])
            epoch, val_acc, loss = payload["epoch"], payload.get("val_acc", math.nan), payload.get("loss", math.nan)
            if not (math.isfinite(loss) and math.isfinite(val_acc)):
                pruned_because = f"loss became {loss} at epoch {epoch}"
            elif self._db(functools.partial(self._report, trial, val_acc, epoch), "reporting an epoch"):
                pruned_because = f"pruned by {self.spec.pruner.type} at epoch {epoch}"
            self._child.reply(keep_going=not pruned_because)

    def _report(self, trial: optuna.trial.Trial, val_acc: float, epoch: int) -> bool:
        """Report the epoch; True if the pruner says stop.

        The epoch reaches the database once `report_seconds` have passed since the last write (the
        dashboard's live curves), else with a later epoch or the result. A pruning check writes
        at once: the rung's value then counts in other workers' checks, as with `trial.report`.
        """
        trial.report(val_acc, epoch)
        if not search.can_prune_at(self.spec, epoch):
            self.trial_storage.flush(older_than=self.spec.fleet.report_seconds)
            return False
        prune = trial.should_prune()
        self.trial_storage.flush()
        return prune

    def _reap_due(self) -> bool:
        """Every half stale limit, once the storage has answered this worker for a whole stale limit.

        Right after an outage every live worker's heartbeat is old; waiting a stale limit with
        the storage up gives each of them time to beat again, so only the dead stay stale.
        """
        return time.monotonic() >= self._next_reap and self._reach.steady_for(self.spec.fleet.stale_after_seconds)

    def _reap(self) -> None:
        with self.store.lock(self.spec.name):
            self._reap_unlocked()

    def _reap_unlocked(self) -> None:
        """Fail (and queue again) the trials of workers that stopped beating; call under the lock."""
        fleet = self.spec.fleet
        self._next_reap = time.monotonic() + fleet.stale_after_seconds / 2
        adopted = storage.adopt_orphans(self.store, self.study._study_id, fleet.stale_after_seconds)
        if adopted:
            log.info(
                "%s: %d RUNNING trial(s) never had a heartbeat; they will be reaped if no worker claims them",
                self.name,
                adopted,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def _finish(
        self, trial: optuna.trial.Trial, state: TrialState, attrs: dict, history: dict, started: float
    ) -> TrialState:
        summary = _summarize(history)
        attrs.update(summary)
        value = summary.get("best_val_acc")
        if state == TrialState.COMPLETE and value is None:
            state = TrialState.FAIL
        frozen = self._record(trial, attrs, history, started, state, value if state == TrialState.COMPLETE else None)
        now = self._db(lambda: progress(self.store, self.study, self.spec.study.budget), "counting trials")
        log.info(
            "%s: trial %d %s val_acc=%s epochs=%d %.1fs [%d/%d finished]",
            self.name, frozen.number, frozen.state.name, _fmt(frozen.value), len(history.get("val_acc", [])),
            time.monotonic() - started, now.finished, now.budget,
        )  # fmt: skip
        return frozen.state

    def _fail(self, trial: optuna.trial.Trial, attrs: dict, history: dict, reason: str, started: float) -> TrialState:
        """Mark the trial FAIL with its reason and queue the same parameters again (bounded)."""
        attrs["fail_reason"] = reason
        attrs.update(_summarize(history))
        frozen = self._record(trial, attrs, history, started, TrialState.FAIL, None)
        frozen.user_attrs = {}  # the retry starts clean; the failure stays on this trial
        self._db(lambda: self._retry(self.study, frozen), "queueing a retry")
        log.warning("%s: trial %d FAIL: %s (queued again unless out of retries)", self.name, frozen.number, reason)
        return TrialState.FAIL

    def _record(
        self,
        trial: optuna.trial.Trial,
        attrs: dict,
        history: dict,
        started: float,
        state: TrialState,
        value: float | None,
    ) -> optuna.trial.FrozenTrial:
        """Store the attributes with the epochs not yet stored and the end state, in one transaction.

        A retried write that had landed before the connection dropped counts as done.
        """
        attrs = {**attrs, "history": dict(history), "wall_seconds": time.monotonic() - started}

        def write() -> optuna.trial.FrozenTrial:
            for key, attr in attrs.items():
                trial.set_user_attr(key, attr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self.study.tell(trial, value, state=state)

        try:
            return self._db(write, f"recording trial {trial.number}")
        except optuna.exceptions.UpdateFinishedTrialError:
            stored = self._db(lambda: self.study._storage.get_trial(trial._trial_id), "reading a trial")
            if stored.state == state:  # our own write landed before the connection dropped
                return stored
            raise


def _summarize(history: dict[str, list[float]]) -> dict[str, Any]:
    """Best epoch, its val_acc and train acc (the overfitting gap), and the final val_acc."""
    val_acc = [v for v in history.get("val_acc", []) if math.isfinite(v)]
    if not val_acc:
        return {}
    best = max(range(len(history["val_acc"])), key=lambda i: _finite_or(history["val_acc"][i], -1.0))
    train_acc = history["acc"][best]
    return {
        "best_epoch": best + 1,
        "best_val_acc": history["val_acc"][best],
        "final_val_acc": history["val_acc"][-1],
        "train_acc_at_best": train_acc,
        "overfit_gap": train_acc - history["val_acc"][best],
    }


def _finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def install_signal_handlers(on_stop: Callable[[str], None]) -> None:
    """SIGTERM (docker stop) and Ctrl-C both end the current trial cleanly and exit 0."""

    def handler(signum: int, _frame: object) -> None:
        on_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
