"""Plotly figures of a study's trials: what `sweeper report -f html` embeds and the dashboard saves.

Shared by `sweeper report` and the dashboard process, which saves the regularizer and gap charts
into each study for optuna-dashboard to show. The data comes from `sweeper.reporting.summary`; nothing writes.
"""

from __future__ import annotations

import datetime
import math
import warnings
from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweeper.reporting.summary import Row, confirmed_table, pareto, rows
from sweeper.reporting.wording import describe_params, on_off
from sweeper.storage.records import StudyRecord, TrialRecord

BATCHNORM_COLORS = {True: "#d62728", False: "#1f77b4"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
STATE_COLORS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#7f7f7f",
}


def live_figures(study: optuna.Study, table: list[Row] | None = None) -> dict[str, go.Figure]:
    """What the dashboard process keeps current in each study: the regularizer and gap charts
    against `[report] x` (dropout) where there is one, progress, confirmation and the trade-off."""
    table = rows(study) if table is None else table
    record = StudyRecord.from_study(study)
    x, by = record.chart_axes()
    charts = {"regularizer": regularizer_chart(table, x, by), "gap": gap_chart(table, x, by)} if x else {}
    return {
        **charts,
        "progress": progress_chart(table),
        "confirmed": confirmed_chart(table, record.compared_parameter),
        "tradeoff": tradeoff_chart(table, by),
    }


def all_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """The report's charts: the live ones, val_acc against each other number parameter, curves,
    importances and the timeline."""
    table, record = rows(study), StudyRecord.from_study(study)
    x, by = record.chart_axes()
    space = record.space
    per_parameter = {
        name: parameter_chart(table, name, by, log=dist.get("log", False))
        for name, dist in space.items()
        if name != x and "low" in dist
    }
    extra = {"curves": learning_curves(table), "importance": importance_chart(study), "timeline": timeline_chart(table)}
    return {**live_figures(study, table), **per_parameter, **extra}


def _groups(table: list[Row], by: str | None) -> list[Any]:
    return sorted({r.params.get(by) for r in table}, key=str) if by else [None]


def _color(group: Any, index: int) -> str:
    return BATCHNORM_COLORS[group] if isinstance(group, bool) else PALETTE[index % len(PALETTE)]


def _group_name(by: str | None, group: Any) -> str:
    if by is None:
        return "trials"
    return f"batchnorm {on_off(group)}" if by == "batchnorm" else f"{by} {group}"


def _size(row: Row) -> float:
    lr = row.params.get("learning_rate")
    return 8 if not isinstance(lr, float) or lr <= 0 else max(4.0, 6 + 3 * (math.log10(lr) + 5))  # 1e-5 → 6 px


def _scatter_by_group(
    table: list[Row], y_of, x_name: str, by: str | None, y_title: str, x_title: str, title: str, log_x: bool = False
) -> go.Figure:
    figure = go.Figure()
    for index, group in enumerate(_groups(table, by)):
        for state, symbol in (("COMPLETE", "circle"), ("PRUNED", "circle-open")):
            points = [
                r for r in table
                if r.state == state and (by is None or r.params.get(by) == group)
                and y_of(r) is not None and r.params.get(x_name) is not None
            ]  # fmt: skip
            figure.add_trace(
                go.Scatter(
                    x=[r.params[x_name] for r in points],
                    y=[y_of(r) for r in points],
                    mode="markers",
                    name=f"{_group_name(by, group)} ({state.lower()})",
                    marker={"color": _color(group, index), "symbol": symbol, "size": [_size(r) for r in points]},
                    text=[f"trial {r.number}: {describe_params(r.params, by)}" for r in points],
                    hovertemplate="%{text}<br>" + x_title + " %{x}<br>" + y_title + " %{y:.4f}<extra></extra>",
                )
            )
    baseline = [r for r in table if r.baseline and r.finished and y_of(r) is not None and x_name in r.params]
    figure.add_trace(
        go.Scatter(
            x=[r.params[x_name] for r in baseline], y=[y_of(r) for r in baseline], mode="markers", name="baseline",
            marker={"symbol": "star", "size": 18, "color": "gold", "line": {"color": "black", "width": 1}},
        )
    )  # fmt: skip
    sized = any("learning_rate" in r.params for r in table)
    figure.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend_title="marker size: learning rate" if sized else "",
    )
    if log_x:
        figure.update_xaxes(type="log")
    return figure


def _title(name: str) -> str:
    return {"dropout": "dropout rate", "learning_rate": "learning rate"}.get(name, name)


def _by_text(by: str | None) -> str:
    return "" if by is None else ", by batch normalization" if by == "batchnorm" else f", by {by}"


def regularizer_chart(table: list[Row], x: str, by: str | None) -> go.Figure:
    return _scatter_by_group(
        table, lambda r: r.val_acc, x, by, "val_acc", _title(x), f"val_acc against {_title(x)}{_by_text(by)}"
    )


def parameter_chart(table: list[Row], name: str, by: str | None, log: bool) -> go.Figure:
    return _scatter_by_group(
        table, lambda r: r.val_acc, name, by, "val_acc", _title(name), f"val_acc against {_title(name)}", log_x=log
    )


def gap_chart(table: list[Row], x: str, by: str | None) -> go.Figure:
    return _scatter_by_group(
        table, lambda r: r.gap, x, by, "train acc − val_acc at the best epoch", _title(x),
        f"Overfitting gap against {_title(x)}",
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
        history = TrialRecord.from_frozen(row.trial).history or {}
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
        spans = [(r, start) for r in table if r.state == state and (start := r.trial.datetime_start) is not None]
        if not spans:
            continue
        ends = [r.trial.datetime_complete or datetime.datetime.now() for r, _ in spans]
        figure.add_trace(
            go.Bar(
                y=[TrialRecord.from_frozen(r.trial).worker or "?" for r, _ in spans],
                x=[(end - start).total_seconds() * 1000 for (_, start), end in zip(spans, ends, strict=True)],
                base=[start.isoformat() for _, start in spans],
                orientation="h", name=state.lower(), marker_color=color,
                text=[f"trial {r.number}" for r, _ in spans], hovertemplate="%{text}<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(
        title="Trials over time, per worker", barmode="overlay", xaxis={"type": "date"}, yaxis_title="worker"
    )
    return figure


def progress_chart(table: list[Row]) -> go.Figure:
    """The best val_acc so far against finished trials and against epochs spent: whether to stop early.

    Trials count in the order they finished; epochs spent include those of pruned and failed
    trials (each reported epoch cost its training time), so pruning shows as a steeper curve.
    """
    finished = [(end, r) for r in table if (end := r.trial.datetime_complete) is not None]
    ended = [r for _, r in sorted(finished, key=lambda pair: pair[0])]
    best, epochs, points = -math.inf, 0, []
    for count, row in enumerate(ended, start=1):
        epochs += len(row.trial.intermediate_values)
        if row.state == "COMPLETE" and row.val_acc is not None:
            best = max(best, row.val_acc)
        if best > -math.inf:
            points.append((count, epochs, best, row.number))
    figure = make_subplots(rows=1, cols=2, subplot_titles=("against finished trials", "against epochs spent"))
    for col, x_of in ((1, lambda p: p[0]), (2, lambda p: p[1])):
        figure.add_trace(
            go.Scatter(
                x=[x_of(p) for p in points], y=[p[2] for p in points], mode="lines+markers", line_shape="hv",
                name="best val_acc so far", showlegend=col == 1, line={"color": "#2ca02c"},
                text=[f"after trial {p[3]}" for p in points], hovertemplate="%{y:.4f} %{text}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
    figure.update_xaxes(title_text="trials finished", row=1, col=1)
    figure.update_xaxes(title_text="epochs trained", row=1, col=2)
    figure.update_yaxes(title_text="best val_acc so far", row=1, col=1)
    figure.update_layout(title="Progress: the best val_acc so far")
    return figure


def confirmed_chart(table: list[Row], by: str) -> go.Figure:
    """Each confirmed configuration: its mean val_acc with the 95% interval, and every seed as a dot."""
    confirmed = confirmed_table(table, by)
    figure = go.Figure()
    labels = [f"trial {c['trial']}: {describe_params(c['params'], by)}" for c in confirmed]
    groups = _groups(table, by)
    errors = [(c["ci95"][1] - c["mean"]) if c["ci95"] else 0 for c in confirmed]
    figure.add_trace(
        go.Scatter(
            x=labels, y=[c["mean"] for c in confirmed], mode="markers", name="mean (95% interval)",
            marker={"size": 12, "symbol": "diamond", "color": [_color(c["params"].get(by), groups.index(c["params"].get(by))) for c in confirmed]},
            error_y={"type": "data", "array": errors, "visible": True},
        )
    )  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=[label for label, c in zip(labels, confirmed, strict=True) for _ in c["values"]],
            y=[v for c in confirmed for v in c["values"]], mode="markers", name="each seed",
            marker={"size": 6, "color": "rgba(0,0,0,0.5)"},
        )
    )  # fmt: skip
    if not confirmed:
        figure.add_annotation(
            text="no confirmation runs yet ([confirm] seeds)", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    figure.update_layout(title="Confirmed configurations over seeds", yaxis_title="val_acc")
    return figure


def tradeoff_chart(table: list[Row], by: str | None) -> go.Figure:
    """val_acc against the overfitting gap for every COMPLETE search trial; the front drawn as a line."""
    complete = [r for r in table if r.state == "COMPLETE" and r.confirms is None and r.gap is not None]
    figure = go.Figure()
    for index, group in enumerate(_groups(complete, by)):
        points = [r for r in complete if by is None or r.params.get(by) == group]
        figure.add_trace(
            go.Scatter(
                x=[r.gap for r in points], y=[r.val_acc for r in points], mode="markers",
                name=_group_name(by, group), marker={"color": _color(group, index)},
                text=[f"trial {r.number}" for r in points],
            )
        )  # fmt: skip
    front = pareto(complete)
    figure.add_trace(
        go.Scatter(
            x=[r.gap for r in front], y=[r.val_acc for r in front], mode="lines", line_shape="hv",
            name="trade-off front", line={"color": "#2ca02c"},
        )
    )  # fmt: skip
    figure.update_layout(
        title="Trade-off: val_acc against the overfitting gap",
        xaxis_title="train acc − val_acc at the best epoch", yaxis_title="val_acc",
    )  # fmt: skip
    return figure
