"""A worker's storage: Optuna's cached RDB storage, with the trial the worker runs kept in memory.

Optuna reads a RUNNING trial back from the database on every look (seven statements) and
commits each of its parameters, attributes and epochs on its own (three statements each): most
of a worker's orchestration time per trial (BENCHMARKS.md §2). While a worker holds its trial
nobody else writes to it: a reaper fails it only after its heartbeat stopped, and from then on
the database refuses the worker's writes. So this storage serves the worker's reads of that
trial from memory and keeps its writes until `flush()` or the trial's end, then writes them in
one transaction (`trialwrites`). That is the persistence `_CachedStorage` itself promises:
trial writes may wait, but they all land before the trial's state changes.

Everything else is Optuna's `_CachedStorage` (private; Optuna is pinned below 6 and
`tests/test_heldtrial.py` checks what the worker sees against plain Optuna).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Container, Sequence
from typing import Any

from optuna import distributions
from optuna._typing import JSONSerializable
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial, TrialState

from sweeper import trialwrites
from sweeper.trialwrites import TrialWrites


class HeldTrialStorage(_CachedStorage):
    """Holds the trial this process started (created RUNNING, or moved from WAITING to RUNNING) until it ends."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._held: FrozenTrial | None = None
        self._unsent = TrialWrites()
        self._sent_at = time.monotonic()
        self._study_ids: dict[str, int] = {}

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self._hold(study_id, trial_id, popped=False)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        if state.is_finished() and self._is_held(trial_id):
            self._end(state, values)
            return True
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:  # a queued trial (baseline or retry) popped by ask
            self._hold(self._trial_id_to_study_id_and_number[trial_id][0], trial_id, popped=True)
        return changed

    def _hold(self, study_id: int, trial_id: int, *, popped: bool) -> None:
        """Hold the trial once every trial below it is in the cache; from then on reads skip it.

        Optuna numbers a new trial by counting the trials below it, under a row lock on the study,
        so trials commit in the order of their ids: if numbers 0..N-1 are cached, nothing below
        this trial can still appear. A popped trial was just read as WAITING, so it is read again
        for the start time the database gave it.
        """
        self._release()
        study = self._studies[study_id]
        number = self._trial_id_to_study_id_and_number[trial_id][1]
        if popped or not all(n in study.trials for n in range(number)):
            self._read_trials_from_remote_storage(study_id)
        with self._lock:
            self._held = study.trials[number]
            study.unfinished_trial_ids.add(trial_id)  # read again if released before it ends
            self._sent_at = time.monotonic()

    def _release(self) -> None:
        with self._lock:
            self._held, self._unsent = None, TrialWrites()

    def _end(self, state: TrialState, values: Sequence[float] | None) -> None:
        """The unsent writes, the values and the end state in one transaction; the cache keeps the result."""
        held = self._held
        assert held is not None
        try:
            completed = trialwrites.write(self._backend, held._trial_id, self._unsent, state, values)
        except UpdateFinishedTrialError:
            self._release()  # reaped meanwhile: the database has the final word, read on the next look
            raise
        with self._lock:
            held.state, held.values, held.datetime_complete = state, values, completed
            study = self._studies[self._trial_id_to_study_id_and_number[held._trial_id][0]]
            study.unfinished_trial_ids.discard(held._trial_id)
            # Every trial below it was cached when it was held, and later ones are read by id.
            study.last_finished_trial_id = max(study.last_finished_trial_id, held._trial_id)
        self._release()

    def flush(self, older_than: float = 0.0) -> None:
        """Write the held trial's unsent writes in one transaction, if the last write is `older_than` seconds old.

        Raises `UpdateFinishedTrialError` if the trial was reaped meanwhile (and lets go of it).
        """
        if self._held is None or not self._unsent or time.monotonic() - self._sent_at < older_than:
            return
        try:
            trialwrites.write(self._backend, self._held._trial_id, self._unsent)
        except UpdateFinishedTrialError:
            self._release()
            raise
        self._unsent, self._sent_at = TrialWrites(), time.monotonic()

    def get_study_id_from_name(self, study_name: str) -> int:
        """Remembered: Hyperband looks its study up by name for every sampling step and pruning check."""
        if study_name not in self._study_ids:
            self._study_ids[study_name] = super().get_study_id_from_name(study_name)
        return self._study_ids[study_name]

    def _is_held(self, trial_id: int) -> bool:
        return self._held is not None and self._held._trial_id == trial_id

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if self._is_held(trial_id):
                return copy.deepcopy(self._held)  # a snapshot, as a read from the database would be
        return super().get_trial(trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy, states)
        held = self._held
        if deepcopy or held is None:
            return trials
        return [copy.deepcopy(trial) if trial is held else trial for trial in trials]

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """Optuna's incremental read, skipping the held trial (every trial below it is already known)."""
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            held = (
                self._held
                if self._held and self._trial_id_to_study_id_and_number[self._held._trial_id][0] == study_id
                else None
            )
            unfinished = study.unfinished_trial_ids - {held._trial_id} if held else study.unfinished_trial_ids
            newer_than = max(study.last_finished_trial_id, held._trial_id if held else -1)
            trials = self._backend._get_trials(
                study_id, states=None, included_trial_ids=unfinished, trial_id_greater_than=newer_than
            )
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)

    # Writes to the held trial wait in `_unsent` (and show in the held copy at once); others go to the database.

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: distributions.BaseDistribution
    ) -> None:
        with self._lock:
            study_id = self._trial_id_to_study_id_and_number[trial_id][0]
            known = self._studies[study_id].param_distribution.get(param_name)
        if known is None or not self._is_held(trial_id):  # the study's first use of the name is checked by Optuna
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        else:
            distributions.check_distribution_compatibility(known, distribution)
            self._unsent.params[param_name] = (param_value_internal, distribution)
        with self._lock:
            if self._is_held(trial_id):
                self._held.params[param_name] = distribution.to_external_repr(param_value_internal)
                self._held.distributions[param_name] = distribution

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        if not self._keep(trial_id, "intermediate_values", step, intermediate_value):
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._keep(trial_id, "user_attrs", key, value):
            super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        if not self._keep(trial_id, "system_attrs", key, value):
            super().set_trial_system_attr(trial_id, key, value)

    def _keep(self, trial_id: int, kind: str, key: Any, value: Any) -> bool:
        """Keep a write to the held trial for the next flush and show it in the held copy; False if not held."""
        with self._lock:
            if not self._is_held(trial_id):
                return False
            getattr(self._unsent, kind)[key] = value
            # Attributes as the database will give them back (tuples become lists, ...).
            getattr(self._held, kind)[key] = value if kind == "intermediate_values" else json.loads(json.dumps(value))
            return True
