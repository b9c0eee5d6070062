"""One running trial's writes: its epochs' val_acc and its result, in few transactions.

Optuna's `trial.report` and `trial.set_user_attr` commit one transaction each (a few ms on
PostgreSQL), so a trial of 30 short epochs with a dozen result attributes would spend most of
its orchestration time committing. The recorder hands each epoch's value to the trial at once
(the pruner reads it from there, as after `trial.report`) and writes the values to the storage
when `report_seconds` have passed since its last write (the dashboard's live curves) or with
the trial's result, in one transaction. Nothing is dropped: the result's write carries every
value not yet stored, before the trial's state changes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from sweeper.heldtrial import HeldTrialStorage


@dataclass
class TrialRecorder:
    storage: HeldTrialStorage
    trial: optuna.trial.Trial
    report_seconds: float
    _unsent: dict[int, float] = field(default_factory=dict)
    _written_at: float = field(default_factory=time.monotonic)

    def report(self, epoch: int, value: float) -> None:
        """`trial.report`, with the storage write deferred by up to `report_seconds`."""
        value = float(value)
        # Optuna's pruners read the trial's own values from this copy (as `trial.report` leaves it),
        # and other trials' values from the storage.
        self.trial._cached_frozen_trial.intermediate_values[epoch] = value
        self._unsent[epoch] = value
        if time.monotonic() - self._written_at >= self.report_seconds:
            self.write()

    def write(self, user_attrs: Mapping[str, Any] | None = None) -> None:
        """Write the kept values and `user_attrs` in one transaction (safe to retry: rows are upserted)."""
        self.storage.write_running_trial(self.trial._trial_id, self._unsent, user_attrs or {})
        self._unsent.clear()
        self._written_at = time.monotonic()
