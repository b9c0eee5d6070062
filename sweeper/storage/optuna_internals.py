"""The few places sweeper reaches past Optuna's public API, each said once, each checked by a
contract test (`tests/unit/test_optuna_internals.py`) that names the internal when an Optuna
release changes it.

Why each remains:
- `Trial._trial_id`: heartbeats and the claim's takeover are per trial id (`record_heartbeat`,
  `get_trial` are public storage calls), and a `Trial` does not expose its id.
- `Trial(study, trial_id)`: taking over a claim cut short needs the `Trial` of a RUNNING trial
  this worker did not create; `study.ask` only makes new ones.
- The samplers' `_rng` random states: reseeded per trial (what `reseed_rng()` does, but with
  the trial's own seed); building a sampler per trial instead re-reads the whole history for
  TPE's search-space cache.
- Raw SQL on Optuna's `trials`, `studies`, `trial_params`, `trial_user_attributes`,
  `trial_system_attributes` and `trial_heartbeats` tables: the public API cannot say which
  RUNNING trials have a heartbeat, or when it was; and it counts trials only by reading every
  one of them (`get_all_trials`), which made each claim's cost grow with the study's history.
The system attr `fixed_params` (a queued trial's parameters) is read in `records`, with the rest
of what a study stores.
"""

from __future__ import annotations

import collections
import datetime
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweeper.storage._store import Store


def trial_id(trial: optuna.trial.Trial) -> int:
    """The storage's id of a running trial."""
    return trial._trial_id


def trial_by_id(study: optuna.Study, trial_id: int) -> optuna.trial.Trial:
    """The `Trial` of a RUNNING trial by its storage id (a claim cut short, taken over)."""
    return optuna.trial.Trial(study, trial_id)


def random_states(sampler: optuna.samplers.BaseSampler) -> list[np.random.RandomState]:
    """The random states a sampler draws from: the ones `reseed_rng()` reseeds."""
    lazy = [sampler._rng]  # type: ignore[attr-defined]  # RandomSampler and TPESampler both keep one
    if isinstance(sampler, optuna.samplers.TPESampler):
        lazy.append(sampler._random_sampler._rng)
    return [state.rng for state in lazy]


def abandoned_claim(store: Store, study_name: str) -> int | None:
    """The id of a RUNNING trial that never had a heartbeat: a claim cut short. Call under the study lock.

    A claim creates its trial and records its first heartbeat under the study lock, so under the
    lock such a trial has no live worker: the storage went away between the two (an outage, a
    connection dropped after its commit) or the worker was killed there. The next claim takes it over.
    """
    query = sqlalchemy.text(
        "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING' AND h.trial_id IS NULL ORDER BY t.trial_id LIMIT 1"
    )
    found = store.rows(query, name=study_name)
    return int(found[0][0]) if found else None


def running_heartbeats(store: Store, study_name: str) -> dict[int, datetime.datetime]:
    """The last heartbeat of each RUNNING trial of the study that has one, by the database's clock
    (`database_now`), so hosts with skewed clocks agree."""
    query = sqlalchemy.text(
        "SELECT t.trial_id, h.heartbeat FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE s.study_name = :name AND t.state = 'RUNNING'"
    ).columns(trial_id=sqlalchemy.Integer, heartbeat=sqlalchemy.DateTime)
    return {trial_id: beat for trial_id, beat in store.rows(query, name=study_name)}


_OF_STUDY = "FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = :name"


def database_now(store: Store) -> datetime.datetime:
    """The database's clock, read the way Optuna stamps heartbeats (`now()`, without its time zone)."""
    return store.rows(sqlalchemy.select(sqlalchemy.func.now()))[0][0].replace(tzinfo=None)


def trial_counts(store: Store, study_name: str) -> collections.Counter[TrialState]:
    """How many trials of the study are in each state: one indexed count, however long its history."""
    rows = store.rows(sqlalchemy.text(f"SELECT t.state, count(*) {_OF_STUDY} GROUP BY t.state"), name=study_name)
    return collections.Counter({TrialState[str(state)]: int(count) for state, count in rows})


def waiting_trial_ids(store: Store, study_name: str) -> list[int]:
    """The study's queued (WAITING) trials, oldest first, as `study.ask()` takes them."""
    query = sqlalchemy.text(f"SELECT t.trial_id {_OF_STUDY} AND t.state = 'WAITING' ORDER BY t.trial_id")
    return [int(row[0]) for row in store.rows(query, name=study_name)]


def count_with_param(
    store: Store,
    study_name: str,
    param: str,
    distribution: optuna.distributions.BaseDistribution,
    value: Any,
    states: Iterable[TrialState],
    *,
    except_user_attr: tuple[str, Any],
    up_to: int,
) -> int:
    """How many trials in `states` have `param` = `value` (drawn from `distribution`, or fixed by
    their queue entry), leaving out those whose user attr `except_user_attr[0]` equals
    `except_user_attr[1]`; counting stops at `up_to`, so a claim's question ("has each group its
    share yet?") costs the same at 100 trials of history and at 10,000.

    A drawn value is stored as its internal form beside the distribution's JSON; a queued trial's
    value is in its `fixed_params`.
    """
    key, excluded = except_user_attr
    counted = (
        "s.study_name = :name AND t.state IN :states AND NOT EXISTS (SELECT 1 FROM trial_user_attributes u "
        "WHERE u.trial_id = t.trial_id AND u.key = :key AND u.value_json = :excluded)"
    )
    drawn = sqlalchemy.text(
        "SELECT count(*) FROM (SELECT 1 FROM trials t JOIN studies s ON s.study_id = t.study_id "  # nosec B608 # fixed clauses; values bound
        "JOIN trial_params p ON p.trial_id = t.trial_id AND p.param_name = :param AND p.param_value = :internal "
        f"AND p.distribution_json = :distribution WHERE {counted} LIMIT :up_to) AS found"
    ).bindparams(sqlalchemy.bindparam("states", expanding=True))
    queued = sqlalchemy.text(
        "SELECT a.value_json FROM trials t JOIN studies s ON s.study_id = t.study_id "  # nosec B608 # fixed clauses; values bound
        f"JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'fixed_params' WHERE {counted} "
        "AND NOT EXISTS (SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id AND p.param_name = :param)"
    ).bindparams(sqlalchemy.bindparam("states", expanding=True))
    params = {
        "name": study_name,
        "param": param,
        "states": [state.name for state in states],
        "key": key,
        "excluded": json.dumps(excluded),
        "internal": distribution.to_internal_repr(value),
        "distribution": optuna.distributions.distribution_to_json(distribution),
        "up_to": up_to,
    }
    found = int(store.rows(drawn, **params)[0][0])
    if found >= up_to:
        return found
    fixed = sum(json.loads(row[0]).get(param, object()) == value for row in store.rows(queued, **params))
    return min(found + fixed, up_to)
