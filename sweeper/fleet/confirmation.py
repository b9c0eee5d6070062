"""The confirmation phase: once the search budget is met, the winners run again with other seeds.

One training run per configuration cannot tell a real lead from a lucky seed. So the best trial
of each batch normalization group, the baseline and the `top` best overall are queued again,
`[confirm] seeds` times each, exactly once for the whole fleet (under the study lock), with the
same parameters: each run draws its training seed from its own trial number, the data split is
the study's. They are never pruned, and the exact budget covers them: the study's total is the
search budget plus the confirmation trials.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.storage import records
from sweeper.storage.records import StudyRecord, TrialRecord
from sweeper.storage.studies import value_of
from sweeper.studyfile import StudySpec


def total_budget(record: StudyRecord, spec: StudySpec) -> int:
    """The search budget plus the confirmation trials once they are queued."""
    return spec.study.budget + ((record.confirm_trials or 0) if spec.confirm.seeds else 0)


def pending(record: StudyRecord, spec: StudySpec) -> bool:
    """Confirmation is asked for and not yet queued."""
    return spec.confirm.seeds > 0 and record.confirm_trials is None


def chosen(trials: list[FrozenTrial], top: int, by: str) -> list[FrozenTrial]:
    """Each compared group's best search trial (batch normalization on, off), the baseline, then the `top` best overall."""
    search = [t for t in trials if t.state == TrialState.COMPLETE and not records.is_confirmation(t)]
    ranked = sorted(search, key=lambda t: (-value_of(t), t.number))
    picks: list[FrozenTrial] = []
    for group in dict.fromkeys(t.params.get(by) for t in ranked):
        picks.append(next(t for t in ranked if t.params.get(by) == group))
    picks += [t for t in ranked if TrialRecord.from_frozen(t).baseline][:1]
    picks += ranked[:top] if top else []
    unique = {t.number: t for t in picks}
    return sorted(unique.values(), key=lambda t: (-value_of(t), t.number))


def enqueue(study: optuna.Study, spec: StudySpec) -> int:
    """Queue the confirmation trials; the caller holds the study lock and has checked `pending`."""
    picks = chosen(study.get_trials(deepcopy=False), spec.confirm.top, spec.groups_by)
    for trial in picks:
        for _ in range(spec.confirm.seeds):
            run = TrialRecord(phase=records.CONFIRM_PHASE, confirms=trial.number)
            study.enqueue_trial(trial.params, user_attrs=run.to_attrs(), skip_if_exists=False)
    count = len(picks) * spec.confirm.seeds
    StudyRecord(study.study_name, confirm_trials=count).write(study, "confirm_trials")
    return count
