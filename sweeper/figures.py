"""A study → the tutorial's answer: summary tables and plotly figures.

Shared by `sweeper report` (terminal, JSON, CSV, HTML) and the dashboard process, which saves
the regularizer and gap charts into each study for optuna-dashboard to show.
Everything here reads trials and the user attributes the worker stores; nothing writes.
"""

from __future__ import annotations

import datetime
import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BATCHNORM_COLORS = {True: "#d62728", False: "#1f77b4"}
STATE_COLORS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#7f7f7f",
}
DROPOUT_BINS = 3


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

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "PRUNED")


def rows(study: optuna.Study) -> list[Row]:
    out = []
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
            )
        )
    return out


# ---------------------------------------------------------------- summary tables


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
        f"dropout {_num(best.dropout, '.2f')}, learning rate {_num(best.learning_rate, '.2g')} (trial {best.number}"
        + (f", gap {best.gap:.3f} at epoch {best.best_epoch})" if best.gap is not None else ")")
    )
    if baseline is not None and baseline.val_acc is not None:
        text += f"; the tutorial's baseline (dropout 0.2, no batch normalization) reached {baseline.val_acc:.4f}."
    with_gap = [row for row in table if row["median_gap"] is not None]
    if with_gap:
        calm = min(with_gap, key=lambda row: row["median_gap"])
        text += (
            f" Least overfitting: batch normalization {_on_off(calm['batchnorm'])} with dropout "
            f"{calm['dropout']} (median gap {calm['median_gap']:.3f})."
        )
    return text


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _on_off(flag: bool | None) -> str:
    return "?" if flag is None else ("on" if flag else "off")


# ---------------------------------------------------------------- figures


def all_figures(study: optuna.Study) -> dict[str, go.Figure]:
    table = rows(study)
    return {
        "regularizer": regularizer_chart(table),
        "learning_rate": learning_rate_chart(table),
        "gap": gap_chart(table),
        "curves": learning_curves(table),
        "importance": importance_chart(study),
        "timeline": timeline_chart(table),
    }


def _lr_size(lr: float | None) -> float:
    return 8 if lr is None else 6 + 3 * (math.log10(lr) + 5)  # 1e-5 → 6 px, 1e-2 → 15 px


def _scatter_by_batchnorm(
    table: list[Row], y_of, x_of, y_title: str, x_title: str, title: str, log_x: bool = False
) -> go.Figure:
    figure = go.Figure()
    for batchnorm in (False, True):
        for state, symbol in (("COMPLETE", "circle"), ("PRUNED", "circle-open")):
            points = [r for r in table if r.state == state and r.batchnorm is batchnorm and y_of(r) is not None]
            figure.add_trace(
                go.Scatter(
                    x=[x_of(r) for r in points],
                    y=[y_of(r) for r in points],
                    mode="markers",
                    name=f"batchnorm {'on' if batchnorm else 'off'} ({state.lower()})",
                    marker={
                        "color": BATCHNORM_COLORS[batchnorm],
                        "symbol": symbol,
                        "size": [_lr_size(r.learning_rate) for r in points],
                    },
                    text=[f"trial {r.number}, lr {_num(r.learning_rate, '.2g')}" for r in points],
                    hovertemplate="%{text}<br>" + x_title + " %{x}<br>" + y_title + " %{y:.4f}<extra></extra>",
                )
            )
    baseline = [r for r in table if r.baseline and r.finished and y_of(r) is not None]
    figure.add_trace(
        go.Scatter(
            x=[x_of(r) for r in baseline], y=[y_of(r) for r in baseline], mode="markers", name="baseline",
            marker={"symbol": "star", "size": 18, "color": "gold", "line": {"color": "black", "width": 1}},
        )
    )  # fmt: skip
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, legend_title="marker size: learning rate"
    )
    if log_x:
        figure.update_xaxes(type="log")
    return figure


def regularizer_chart(table: list[Row]) -> go.Figure:
    return _scatter_by_batchnorm(
        table,
        lambda r: r.val_acc,
        lambda r: r.dropout,
        "val_acc",
        "dropout rate",
        "val_acc against dropout rate, by batch normalization",
    )


def learning_rate_chart(table: list[Row]) -> go.Figure:
    return _scatter_by_batchnorm(
        table,
        lambda r: r.val_acc,
        lambda r: r.learning_rate,
        "val_acc",
        "learning rate",
        "val_acc against learning rate",
        log_x=True,
    )


def gap_chart(table: list[Row]) -> go.Figure:
    return _scatter_by_batchnorm(
        table, lambda r: r.gap, lambda r: r.dropout, "train acc − val_acc at the best epoch", "dropout rate",
        "Overfitting gap against dropout rate",
    )  # fmt: skip


def learning_curves(table: list[Row]) -> go.Figure:
    """The tutorial's two panels (accuracy, loss) for the best trial next to the baseline."""
    finished = [r for r in table if r.finished and r.val_acc is not None]
    best = max(finished, key=lambda r: (r.state == "COMPLETE", r.val_acc), default=None)
    baseline = next((r for r in finished if r.baseline), None)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"))
    for label, row, dash in (("best", best, "solid"), ("baseline", baseline, "dash")):
        if row is None:
            continue
        history = row.trial.user_attrs.get("history", {})
        for col, keys in ((1, ("acc", "val_acc")), (2, ("loss", "val_loss"))):
            for key in keys:
                values = history.get(key, [])
                figure.add_trace(
                    go.Scatter(
                        x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                        name=f"{label} (trial {row.number}) {key}", line={"dash": dash},
                    ),
                    row=1, col=col,
                )  # fmt: skip
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title="Learning curves: best trial and baseline")
    return figure


def importance_chart(study: optuna.Study) -> go.Figure:
    figure = go.Figure()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):
        importances = {}
    if importances:
        names = list(importances)[::-1]
        figure.add_trace(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", name="importance"))
    else:
        figure.add_annotation(
            text="not enough finished trials yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    figure.update_layout(title="Parameter importances (Optuna's default evaluator)", xaxis_title="importance")
    return figure


def timeline_chart(table: list[Row]) -> go.Figure:
    """Trials over time, one lane per worker: parallelism, gaps and failures at a glance."""
    figure = go.Figure()
    for state, color in STATE_COLORS.items():
        spans = [r for r in table if r.state == state and r.trial.datetime_start is not None]
        if not spans:
            continue
        ends = [r.trial.datetime_complete or datetime.datetime.now() for r in spans]
        figure.add_trace(
            go.Bar(
                y=[r.trial.user_attrs.get("worker", "?") for r in spans],
                x=[(end - r.trial.datetime_start).total_seconds() * 1000 for r, end in zip(spans, ends, strict=False)],
                base=[r.trial.datetime_start.isoformat() for r in spans],
                orientation="h", name=state.lower(), marker_color=color,
                text=[f"trial {r.number}" for r in spans], hovertemplate="%{text}<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(
        title="Trials over time, per worker", barmode="overlay", xaxis={"type": "date"}, yaxis_title="worker"
    )
    return figure
