"""A fair comparison: every group of the compared parameter gets its share of the search.

A sampler rightly spends its budget where val_acc is best, so the groups it leaves early (batch
normalization off, say) end the study untuned, and comparing them with the tuned favourite says
more about the sampler than about the groups. With `[compare] by = "batchnorm"` and
`min_trials = k`, a claim that finds a group with fewer than k search trials (finished, running
or queued) queues one trial with that group's value fixed before asking for it: the sampler
still chooses the other parameters, from everything the study has learned. The assignments come
first, shortest group first, then the search is free. They happen under the study lock with
the claim, so a group gets its share whatever the sampler prefers; the budget stays exact,
since an assignment is only a queued trial.
"""

from __future__ import annotations

from typing import Any, cast

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.fleet.search import params_of
from sweeper.storage import records
from sweeper.storage.records import TrialRecord
from sweeper.studyfile import StudySpec

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def group_counts(trials: list[FrozenTrial], spec: StudySpec) -> dict[Any, int]:
    """Search trials (finished, running or queued) per value of the compared parameter."""
    if spec.compare is None:
        raise TypeError("only a study with [compare] counts its groups")
    by = spec.compare.by
    counts = {value: 0 for value in cast(CategoricalDistribution, spec.space.distributions()[by]).choices}
    for trial in trials:
        value = params_of(trial).get(by)
        if trial.state in COUNTED and value in counts and not records.is_confirmation(trial):
            counts[value] += 1
    return counts


def assign(study: optuna.Study, spec: StudySpec) -> None:
    """Queue a trial in the shortest group if one is short; the caller holds the study lock.

    Nothing is read without `[compare]`. A queued trial already waiting (a baseline, a retry)
    goes first: `study.ask` would take it anyway, and the next claim looks again.
    """
    if spec.compare is None:
        return
    trials = study.get_trials(deepcopy=False, states=COUNTED)
    if any(t.state == TrialState.WAITING for t in trials):
        return
    counts = group_counts(trials, spec)
    if sum(counts.values()) >= spec.study.budget:  # the search is over: confirmation runs or retries
        return
    value, count = min(counts.items(), key=lambda item: item[1])
    if count < spec.compare.min_trials:
        study.enqueue_trial({spec.compare.by: value}, skip_if_exists=False)


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
