"""A study → the tutorial's answer as plain data: trial rows, the summary, the regularizer table.

`sweeper report` prints it (terminal, JSON, CSV, HTML) and `sweeper studies` lists one row per
study; `sweeper.figures` draws from the same rows. Everything here reads; nothing writes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tabulate import tabulate

from sweeper.errors import SweeperError
from sweeper.search import format_params
from sweeper.storage import Store

DROPOUT_BINS = 3
LEARNED_MARGIN = 0.03
"""Groups this far below the best group's median val_acc are not named "least overfitting": about
two standard errors of one val_acc on the tutorial's validation split (1,551 images)."""


@dataclass(frozen=True)
class Row:
    """One trial, flattened to what the tables and charts need."""

    number: int
    state: str
    val_acc: float | None
    dropout: float | None
    batchnorm: bool | None
    learning_rate: float | None
    best_epoch: int | None
    gap: float | None
    baseline: bool
    trial: FrozenTrial
    model: str | None = None
    """"kept" (in the store), "removed" (fell out of the best kept), or None (no model saved)."""

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "PRUNED")


def rows(study: optuna.Study) -> list[Row]:
    out = []
    removed = set(study.user_attrs.get("models_removed", []))
    for trial in study.get_trials(deepcopy=False):
        params, attrs = trial.params or trial.system_attrs.get("fixed_params", {}), trial.user_attrs
        out.append(
            Row(
                number=trial.number,
                state=trial.state.name,
                val_acc=trial.value,
                dropout=params.get("dropout"),
                batchnorm=params.get("batchnorm"),
                learning_rate=params.get("learning_rate"),
                best_epoch=attrs.get("best_epoch"),
                gap=attrs.get("overfit_gap"),
                baseline=bool(attrs.get("baseline")),
                trial=trial,
                model=("removed" if trial.number in removed else "kept") if attrs.get("model_artifact_id") else None,
            )
        )
    return out


def summary(study: optuna.Study, storage_label: str) -> dict[str, Any]:
    """Everything `sweeper report` prints, as plain data (the JSON format is exactly this)."""
    all_rows = rows(study)
    finished = sorted((r for r in all_rows if r.finished and r.val_acc is not None), key=lambda r: -r.val_acc)
    complete = [r for r in finished if r.state == "COMPLETE"]
    best = complete[0] if complete else (finished[0] if finished else None)
    baseline = next((r for r in finished if r.baseline), None)
    counts = {state.name.lower(): sum(r.state == state.name for r in all_rows) for state in TrialState}
    regularizers = regularizer_table(complete or finished, study)
    return {
        "study": study.study_name,
        "storage": storage_label,
        "budget": study.user_attrs.get("budget"),
        "trials": len(all_rows),
        "counts": counts,
        "nonfinite_loss_trials": sum(
            "loss became" in str(r.trial.user_attrs.get("prune_reason", "")) for r in all_rows
        ),
        "best": _trial_json(best),
        "baseline": _trial_json(baseline),
        "top": [_trial_json(r) for r in finished[:10]],
        "regularizers": regularizers,
        "answer": answer(best, baseline, regularizers),
        "models_kept": [r.number for r in finished if r.model == "kept"],
        "export": f"sweeper export {study.study_name} --best --out best.keras"
        if any(r.model == "kept" for r in finished)
        else None,
    }


def _trial_json(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "number": row.number,
        "state": row.state,
        "val_acc": row.val_acc,
        "params": {"dropout": row.dropout, "batchnorm": row.batchnorm, "learning_rate": row.learning_rate},
        "best_epoch": row.best_epoch,
        "overfit_gap": row.gap,
        "baseline": row.baseline,
        "model": row.model,
    }


def _dropout_edges(study: optuna.Study) -> list[float]:
    spec = study.user_attrs.get("spec", {}).get("space", {}).get("dropout", {})
    low, high = spec.get("low", 0.2), spec.get("high", 0.5)
    step = (high - low) / DROPOUT_BINS
    return [round(low + i * step, 6) for i in range(DROPOUT_BINS + 1)]


def regularizer_table(finished: list[Row], study: optuna.Study) -> list[dict[str, Any]]:
    """Batch normalization on/off × dropout bins: how many trials, best and median val_acc, median gap."""
    edges = _dropout_edges(study)
    table = []
    for batchnorm in (False, True):
        for low, high in zip(edges, edges[1:], strict=False):
            last = high == edges[-1]
            members = [
                r for r in finished
                if r.batchnorm is batchnorm and r.dropout is not None
                and low <= r.dropout and (r.dropout <= high if last else r.dropout < high)
            ]  # fmt: skip
            accs = [r.val_acc for r in members if r.val_acc is not None]
            gaps = [r.gap for r in members if r.gap is not None]
            table.append(
                {
                    "batchnorm": batchnorm,
                    "dropout": f"{low:.2f}-{high:.2f}",
                    "trials": len(members),
                    "best_val_acc": max(accs) if accs else None,
                    "median_val_acc": statistics.median(accs) if accs else None,
                    "median_gap": statistics.median(gaps) if gaps else None,
                }
            )
    return table


def answer(best: Row | None, baseline: Row | None, table: list[dict[str, Any]]) -> str:
    """The tutorial's question, answered in a sentence or two."""
    if best is None:
        return "No finished trials yet."
    text = (
        f"Best val_acc {best.val_acc:.4f}: batch normalization {_on_off(best.batchnorm)}, "
        f"dropout {format_number(best.dropout, '.2f')}, learning rate {format_number(best.learning_rate, '.2g')} (trial {best.number}"
        + (f", gap {best.gap:.3f} at epoch {best.best_epoch})" if best.gap is not None else ")")
    )
    if baseline is not None and baseline.val_acc is not None:
        text += (
            f"; the baseline (dropout {format_number(baseline.dropout, '.2f')}, batch normalization "
            f"{_on_off(baseline.batchnorm)}, learning rate {format_number(baseline.learning_rate, '.2g')}) "
            f"reached {baseline.val_acc:.4f}."
        )
    text += _least_overfitting(table)
    return text


def _least_overfitting(table: list[dict[str, Any]]) -> str:
    """The group that overfits least among those that also learn: a group can show a small gap only
    because it barely learned, so groups whose median val_acc is more than `LEARNED_MARGIN` below
    the best group's are left out, and the sentence names the best of them it left out."""
    groups = [row for row in table if row["median_gap"] is not None and row["median_val_acc"] is not None]
    if not groups:
        return ""
    top = max(row["median_val_acc"] for row in groups)
    learned = [row for row in groups if row["median_val_acc"] >= top - LEARNED_MARGIN]
    calm = min(learned, key=lambda row: row["median_gap"])
    text = (
        f" Least overfitting among the groups whose median val_acc is within {LEARNED_MARGIN} of the best"
        f" group's ({top:.4f}): {_group(calm)} (median gap {calm['median_gap']:.3f},"
        f" median val_acc {calm['median_val_acc']:.4f})."
    )
    calmer = [row for row in groups if row not in learned and row["median_gap"] < calm["median_gap"]]
    if calmer:
        left = min(calmer, key=lambda row: row["median_gap"])
        text += (
            f" {_group(left)[0].upper()}{_group(left)[1:]} has a smaller median gap ({left['median_gap']:.3f})"
            f" but learned less (median val_acc {left['median_val_acc']:.4f})."
        )
    return text


def _group(row: dict[str, Any]) -> str:
    return f"batch normalization {_on_off(row['batchnorm'])} with dropout {row['dropout']}"


def format_number(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _on_off(flag: bool | None) -> str:
    return "?" if flag is None else ("on" if flag else "off")


def summaries(store: Store) -> list[dict[str, Any]]:
    out = []
    for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=True):
        study_id = store.storage.get_study_id_from_name(summary.study_name)
        states = [t.state for t in store.storage.get_all_trials(study_id, deepcopy=False)]
        best = summary.best_trial
        out.append(
            {
                "study": summary.study_name,
                "budget": summary.user_attrs.get("budget"),
                "trials": len(states),
                **{state.name.lower(): states.count(state) for state in TrialState},
                "best_val_acc": best.value if best else None,
                "best_trial": best.number if best else None,
                "best_params": best.params if best else None,
                "models": _model_store(summary.user_attrs, store.url),
            }
        )
    return out


def _model_store(attrs: dict[str, Any], storage_url: str) -> str | None:
    """Where the study keeps its trained models (None where no store is set)."""
    from sweeper import kept_models
    from sweeper.studyfile import Artifacts

    try:
        return kept_models.store_url(Artifacts.model_validate(attrs.get("spec", {}).get("artifacts", {})), storage_url)
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
