"""A fair comparison: every group of the compared parameter gets its share of the search.

A sampler rightly spends its budget where val_acc is best, so the groups it leaves early (batch
normalization off, say) end the study untuned, and comparing them with the tuned favourite says
more about the sampler than about the groups. With `[compare] by = "batchnorm"` and
`min_trials = k`, a claim that finds a group with fewer than k search trials (finished, running
or queued) queues one trial with that group's value fixed before asking for it: the sampler
still chooses the other parameters, from everything the study has learned. The assignments come
first, shortest group first, then the search is free. They happen under the study lock with
the claim, so a group gets its share whatever the sampler prefers; the budget stays exact,
since an assignment is only a queued trial. A claim counts the groups in the database
(`counted_groups`), so that its time under the lock does not grow with the study's history.
"""

from __future__ import annotations

from typing import Any, cast

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.fleet.search import params_of
from sweeper.storage import Store, optuna_internals, records
from sweeper.storage.records import TrialRecord
from sweeper.studyfile import Compare, StudySpec

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def group_counts(trials: list[FrozenTrial], spec: StudySpec) -> dict[Any, int]:
    """Search trials (finished, running or queued) per value of the compared parameter, from the trials."""
    by = _compared(spec).by
    counts = dict.fromkeys(_choices(spec, by), 0)
    for trial in trials:
        value = params_of(trial).get(by)
        if trial.state in COUNTED and value in counts and not records.is_confirmation(trial):
            counts[value] += 1
    return counts


def counted_groups(store: Store, spec: StudySpec) -> dict[Any, int]:
    """`group_counts`, counted in the database up to `[compare] min_trials` (all `assign` needs to
    know): what a claim asks under the study lock, at the same cost however long the history."""
    compare = _compared(spec)
    distribution = spec.space.distributions()[compare.by]
    return {
        value: optuna_internals.count_with_param(
            store,
            spec.name,
            compare.by,
            distribution,
            value,
            COUNTED,
            except_user_attr=records.CONFIRMATION_ATTR,
            up_to=compare.min_trials,
        )  # fmt: skip
        for value in _choices(spec, compare.by)
    }


def assign(study: optuna.Study, spec: StudySpec, counts: dict[Any, int]) -> None:
    """Queue a trial in the shortest group if one is short, given the groups' counts.

    The caller holds the study lock, found no queued trial waiting (a baseline or a retry goes
    first: `study.ask` takes it anyway, and the next claim looks again) and the search budget not
    yet all finished, running or queued (after it come confirmation runs and retries).
    """
    if spec.compare is None:
        return
    value, count = min(counts.items(), key=lambda item: item[1])
    if count < spec.compare.min_trials:
        study.enqueue_trial({spec.compare.by: value}, skip_if_exists=False)


def _compared(spec: StudySpec) -> Compare:
    if spec.compare is None:
        raise TypeError("only a study with [compare] counts its groups")
    return spec.compare


def _choices(spec: StudySpec, by: str) -> tuple[Any, ...]:
    return tuple(cast(CategoricalDistribution, spec.space.distributions()[by]).choices)


def effort(by: str, search_trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """How much of the search each group of parameter `by` had: finished trials (complete, pruned) and epochs trained."""
    groups: dict[Any, dict[str, Any]] = {}
    for trial in search_trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or by not in trial.params:
            continue
        entry = groups.setdefault(
            trial.params[by], {"by": by, "value": trial.params[by], "complete": 0, "pruned": 0, "epochs": 0}
        )
        entry["complete" if trial.state == TrialState.COMPLETE else "pruned"] += 1
        entry["epochs"] += TrialRecord.from_frozen(trial).epochs
    return sorted(groups.values(), key=lambda e: str(e["value"]))
