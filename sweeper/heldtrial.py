"""A worker's storage: Optuna's cached RDB storage, with the trial the worker runs kept in memory.

Optuna reads a RUNNING trial back from the database on every look: seven statements (the
study, the trial, its parameters, values, attributes and intermediate values). A worker looks
at its own trial about ten times per trial (ask, the sampler twice, each pruning check twice,
tell), which was most of the orchestration time per trial (BENCHMARKS.md §2). While a worker
holds its trial nobody else writes to it: a reaper fails it only after its heartbeat stopped,
and from then on the database refuses the worker's writes. So the worker's copy is as current
as the database's, and this storage serves the worker's reads of that trial from it.

Everything else is Optuna's `_CachedStorage` (private; Optuna is pinned below 6 and
`tests/test_heldtrial.py` checks what the worker sees against plain Optuna).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from optuna import distributions
from optuna._typing import JSONSerializable
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial, TrialState

from sweeper import storage


class HeldTrialStorage(_CachedStorage):
    """Holds the trial this process started (created RUNNING, or moved from WAITING to RUNNING) until it ends."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._held: FrozenTrial | None = None
        self._study_ids: dict[str, int] = {}

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            self._hold(study_id, trial_id)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        try:
            changed = super().set_trial_state_values(trial_id, state, values)
        finally:
            if state.is_finished() and self._is_held(trial_id):
                self._held = None  # the database has the final word; the next read fetches it
        if changed and state == TrialState.RUNNING:  # a queued trial (baseline or retry) popped by ask
            self._hold(self._trial_id_to_study_id_and_number[trial_id][0], trial_id)
        return changed

    def _hold(self, study_id: int, trial_id: int) -> None:
        """Read the study once with this trial in it; from then on every trial below it has been seen.

        Optuna creates a trial while holding a row lock on its study, so trials commit in the
        order of their ids: none below this one can still be uncommitted.
        """
        self._held = None
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            study = self._studies[study_id]
            self._held = study.trials[self._trial_id_to_study_id_and_number[trial_id][1]]

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
            held = self._held if self._held and self._trial_id_to_study_id_and_number[self._held._trial_id][0] == study_id else None
            unfinished = study.unfinished_trial_ids - {held._trial_id} if held else study.unfinished_trial_ids
            newer_than = max(study.last_finished_trial_id, held._trial_id if held else -1)
            trials = self._backend._get_trials(study_id, states=None, included_trial_ids=unfinished, trial_id_greater_than=newer_than)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)

    # Writes to the held trial go to the database first, then to the copy.

    def write_running_trial(self, trial_id: int, intermediate_values: Mapping[int, float], user_attrs: Mapping[str, Any]) -> None:
        """`storage.write_trial`: many epochs' values and attributes in one transaction."""
        storage.write_trial(self._backend, trial_id, intermediate_values, user_attrs)

        def change(trial: FrozenTrial) -> None:
            trial.intermediate_values.update(intermediate_values)
            trial.user_attrs.update(user_attrs)

        self._update(trial_id, change)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: distributions.BaseDistribution
    ) -> None:
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)

        def change(trial: FrozenTrial) -> None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

        self._update(trial_id, change)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._update(trial_id, lambda trial: trial.intermediate_values.update({step: intermediate_value}))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        self._update(trial_id, lambda trial: trial.user_attrs.update({key: value}))

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, lambda trial: trial.system_attrs.update({key: value}))

    def _update(self, trial_id: int, change: Callable[[FrozenTrial], None]) -> None:
        with self._lock:
            if self._is_held(trial_id):
                change(self._held)
