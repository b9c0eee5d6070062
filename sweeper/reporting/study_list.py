"""Studies in a store, one line each: what `sweeper studies` lists and `sweeper sweep` prints at its end."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from tabulate import tabulate

from sweeper.errors import SweeperError
from sweeper.fleet.search import format_params
from sweeper.storage import Store
from sweeper.storage.records import StudyRecord


def summaries(store: Store) -> list[dict[str, Any]]:
    out = []
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=True):
        study_id = store.storage.get_study_id_from_name(summary.study_name)
        states = [t.state for t in store.storage.get_all_trials(study_id, deepcopy=False)]
        best = summary.best_trial
        record = StudyRecord.if_readable(summary.study_name, summary.user_attrs) or StudyRecord(summary.study_name)
        out.append(
            {
                "study": summary.study_name,
                "budget": record.budget,
                "trials": len(states),
                **{state.name.lower(): states.count(state) for state in TrialState},
                "best_val_acc": best.value if best else None,
                "best_trial": best.number if best else None,
                "best_params": best.params if best else None,
                "models": _model_store(record, store.url),
            }
        )
    return out


def _model_store(record: StudyRecord, storage_url: str) -> str | None:
    """Where the study keeps its trained models (None where no store is set)."""
    from sweeper.artifacts import kept_models
    from sweeper.studyfile import Artifacts

    try:
        return kept_models.store_url(Artifacts.model_validate(record.spec.get("artifacts", {})), storage_url)
    except (SweeperError, ValueError):
        return None


def studies_table(rows: list[dict[str, Any]]) -> str:
    """`sweeper studies` and the end of `sweeper sweep`: one line per study."""

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return f"{value:.4f}"
        if isinstance(value, dict):
            return format_params(value)
        return "-" if value is None else value

    return tabulate([{k: cell(v) for k, v in row.items()} for row in rows], headers="keys")
