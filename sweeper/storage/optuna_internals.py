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
- Raw SQL on Optuna's `trials`, `studies` and `trial_heartbeats` tables: the public API cannot
  say which RUNNING trials have a heartbeat, or when it was.
The system attr `fixed_params` (a queued trial's parameters) is read in `records`, with the rest
of what a study stores.
"""

from __future__ import annotations

import datetime

import numpy as np
import optuna
import sqlalchemy

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


def running_heartbeats(store: Store, study_name: str) -> tuple[datetime.datetime, dict[int, datetime.datetime]]:
    """The database's clock, and the last heartbeat of each RUNNING trial of the study that has one.

    The clock is read the way Optuna stamps heartbeats (`now()`, without its time zone), so hosts
    with skewed clocks agree.
    """
    now = store.rows(sqlalchemy.select(sqlalchemy.func.now()))[0][0].replace(tzinfo=None)
    query = sqlalchemy.text(
        "SELECT t.trial_id, h.heartbeat FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE s.study_name = :name AND t.state = 'RUNNING'"
    ).columns(trial_id=sqlalchemy.Integer, heartbeat=sqlalchemy.DateTime)
    return now, {trial_id: beat for trial_id, beat in store.rows(query, name=study_name)}
