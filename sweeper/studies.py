"""What a storage holds: one summary row per study (`sweeper studies`, the end of `sweeper sweep`)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.storage import Store


def summaries(store: Store) -> list[dict[str, Any]]:
    rows = []
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=True):
        study_id = store.storage.get_study_id_from_name(summary.study_name)
        states = [t.state for t in store.storage.get_all_trials(study_id, deepcopy=False)]
        best = summary.best_trial
        rows.append(
            {
                "study": summary.study_name,
                "budget": summary.user_attrs.get("budget"),
                "trials": len(states),
                **{state.name.lower(): states.count(state) for state in TrialState},
                "best_val_acc": best.value if best else None,
                "best_trial": best.number if best else None,
                "best_params": best.params if best else None,
            }
        )
    return rows
