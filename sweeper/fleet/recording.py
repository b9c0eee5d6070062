"""A trial's end in the study: its result with every attribute, or its failure queued for a retry.

Everything goes through Optuna's own calls (a `TrialRecord`'s attributes, `study.tell`), each
retried while the storage is away; a retried write that had landed before the connection dropped
counts as done.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from sweeper.storage import Store, optuna_internals, records
from sweeper.storage.records import TrialRecord

T = TypeVar("T")
Retrying = Callable[[Callable[[], T], str], T]


def summarize(history: dict[str, list[float]]) -> dict[str, Any]:
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


class Recorder:
    """Writes the end of this worker's trials into the study."""

    def __init__(self, store: Store, study: optuna.Study, max_retries: int, retrying: Retrying) -> None:
        self._store, self._study, self._retrying = store, study, retrying
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)

    def finish(
        self, trial: optuna.trial.Trial, state: TrialState, record: TrialRecord, history: dict, started: float
    ) -> optuna.trial.FrozenTrial:
        """COMPLETE with the best val_acc as the value, or PRUNED; a COMPLETE without any finite val_acc is FAIL."""
        record = record.merged(summarize(history))
        value = record.best_val_acc
        if state == TrialState.COMPLETE and value is None:
            state = TrialState.FAIL
        return self._record(trial, record, history, started, state, value if state == TrialState.COMPLETE else None)

    def fail(self, trial: optuna.trial.Trial, record: TrialRecord, history: dict, reason: str, started: float) -> None:
        """FAIL with its reason; the same parameters are queued again (at most `max_retries` times)."""
        record = dataclasses.replace(record.merged(summarize(history)), fail_reason=reason)
        frozen = self._record(trial, record, history, started, TrialState.FAIL, None)
        # The retry starts clean, but for what the queue gave the trial; the failure stays on this one.
        self._retrying(lambda: self._retry(self._study, records.for_retry(frozen)), "queueing a retry")

    def _record(
        self,
        trial: optuna.trial.Trial,
        record: TrialRecord,
        history: dict,
        started: float,
        state: TrialState,
        value: float | None,
    ) -> optuna.trial.FrozenTrial:
        record = dataclasses.replace(record, history=dict(history), wall_seconds=time.monotonic() - started)

        def write() -> optuna.trial.FrozenTrial:
            record.write(trial)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self._study.tell(trial, value, state=state)

        try:
            return self._retrying(write, f"recording trial {trial.number}")
        except optuna.exceptions.UpdateFinishedTrialError:
            stored = self._retrying(
                lambda: self._store.storage.get_trial(optuna_internals.trial_id(trial)), "reading a trial"
            )
            if stored.state == state:  # our own write landed before the connection dropped
                return stored
            raise
