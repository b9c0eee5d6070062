"""The contract with Optuna's internals: each test names the internal it checks, so an Optuna
upgrade that changes one fails here, by name, rather than somewhere in a fleet."""

from __future__ import annotations

import datetime
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweeper.storage import connect, optuna_internals, records


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(study_name="contract", storage=f"sqlite:///{tmp_path / 'c.db'}")


def test_trial_id_is_the_storage_id_of_the_trial(study: optuna.Study) -> None:
    trial = study.ask()
    study_id = study._storage.get_study_id_from_name(study.study_name)
    expected = study._storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    assert optuna_internals.trial_id(trial) == expected, "optuna.trial.Trial._trial_id changed"


def test_a_running_trial_is_rebuilt_from_its_id(study: optuna.Study) -> None:
    trial = study.ask()
    again = optuna_internals.trial_by_id(study, optuna_internals.trial_id(trial))
    assert again.number == trial.number, "optuna.trial.Trial(study, trial_id) changed"
    again.set_user_attr("worker", "w")
    assert trial.study.trials[0].user_attrs == {"worker": "w"}, "optuna.trial.Trial(study, trial_id) changed"


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(), optuna.samplers.TPESampler()])
def test_reseeding_the_random_states_repeats_the_draws(sampler: optuna.samplers.BaseSampler) -> None:
    states = optuna_internals.random_states(sampler)
    assert all(isinstance(state, np.random.RandomState) for state in states), "the samplers' `_rng` changed"
    draws = []
    for _ in range(2):
        for state in states:
            state.seed(123)
        study = optuna.create_study(sampler=sampler)
        draws.append(study.ask().suggest_float("x", 0, 1))
    assert draws[0] == draws[1], "the samplers no longer draw from `_rng` (and TPE's `_random_sampler._rng`)"


def test_a_queued_trials_parameters_are_in_fixed_params(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 0.25})
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert records.fixed_params(waiting[0]) == {"x": 0.25}, 'enqueue_trial no longer keeps system_attrs["fixed_params"]'


def test_the_raw_queries_read_optunas_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    store = connect(url, heartbeat_seconds=1, stale_after_seconds=4)
    try:
        study = optuna.create_study(study_name="q", storage=store.storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            beating, silent = study.ask(), study.ask()
            store.storage.record_heartbeat(optuna_internals.trial_id(beating))
        tables = "Optuna's trials, studies or trial_heartbeats tables changed"
        assert optuna_internals.abandoned_claim(store, "q") == optuna_internals.trial_id(silent), tables
        now, beats = optuna_internals.database_now(store), optuna_internals.running_heartbeats(store, "q")
        assert list(beats) == [optuna_internals.trial_id(beating)], tables
        assert abs(now - beats[optuna_internals.trial_id(beating)]) < datetime.timedelta(minutes=1), tables
        choices = optuna.distributions.CategoricalDistribution([True, False])
        beating.suggest_categorical("batchnorm", [True, False])
        study.tell(beating, 0.5)
        study.enqueue_trial({"batchnorm": False})
        study.enqueue_trial({"batchnorm": True}, user_attrs={"phase": "confirm"})
        counted = "Optuna's trials, trial_params, trial_user_attributes or trial_system_attributes tables changed"
        assert optuna_internals.trial_counts(store, "q") == {
            TrialState.COMPLETE: 1,
            TrialState.RUNNING: 1,
            TrialState.WAITING: 2,
        }, counted
        assert len(optuna_internals.waiting_trial_ids(store, "q")) == 2, counted
        drawn = beating.params["batchnorm"]  # counted: the drawn one, the queued one; not the confirmation run
        for value, expected in ((True, int(drawn)), (False, int(not drawn) + 1)):
            found = optuna_internals.count_with_param(
                store,
                "q",
                "batchnorm",
                choices,
                value,
                list(TrialState),
                except_user_attr=("phase", "confirm"),
                up_to=9,
            )
            assert found == expected, counted
    finally:
        store.close()
