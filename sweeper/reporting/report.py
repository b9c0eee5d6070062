"""`sweeper report`: the study's answer as a terminal table, JSON, CSV, or one self-contained HTML file."""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

import optuna
import plotly.offline
from tabulate import tabulate

from sweeper.fleet import search
from sweeper.reporting import figures, summary
from sweeper.reporting.wording import on_off
from sweeper.storage import Store
from sweeper.storage.records import StudyRecord, TrialRecord
from sweeper.storage.urls import mask


def render(study: optuna.Study, store: Store, fmt: str) -> str:
    content = summary.summary(study, mask(store.url))
    if fmt == "json":
        return json.dumps(content, indent=2)
    if fmt == "csv":
        return trials_csv(study)
    if fmt == "html":
        return page(content, study)
    return text(content)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if 1e-3 <= abs(value) or value == 0 else f"{value:.2g}"
    return str(value)


def _params(params: dict[str, Any], names: list[str]) -> list[str]:
    return [_fmt(params.get(name)) for name in names]


def _trial_line(trial: dict[str, Any], names: list[str]) -> list[str]:
    return [
        trial["number"], trial["state"].lower(), _fmt(trial["val_acc"]), *_params(trial["params"], names),
        _fmt(trial["best_epoch"]), _fmt(trial["overfit_gap"], 3), "yes" if trial["baseline"] else "", trial["model"] or "",
    ]  # fmt: skip


def _trial_headers(names: list[str]) -> list[str]:
    return ["trial", "state", "val_acc", *names, "best_epoch", "gap", "baseline", "model"]


def _group_value(value: Any) -> str:
    return on_off(value) if isinstance(value, bool) else str(value)


def _models_line(content: dict[str, Any]) -> str:
    if not content["export"]:
        return "No trained model kept yet (COMPLETE trials keep theirs)."
    kept = ", ".join(str(n) for n in content["models_kept"])
    return f"Models kept for trials {kept}; export the best with: {content['export']}"


def text(content: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in content["counts"].items() if n)
    lines = [
        f"study    {content['study']}",
        f"storage  {content['storage']}",
        f"trials   {content['trials']} ({counts or 'none'}); budget {content['budget']} finished",
        "",
    ]
    if content["best"] is None:
        lines.append("No finished trials yet: start a worker with 'sweeper worker <study file>'.")
        return "\n".join(lines)
    lines += [content["answer"], "", _models_line(content), ""]
    if content["nonfinite_loss_trials"]:
        lines += [f"{content['nonfinite_loss_trials']} trial(s) stopped because the loss became NaN or infinite.", ""]
    pair = [content["best"]] + (
        [content["baseline"]] if content["baseline"] and content["baseline"] != content["best"] else []
    )
    names, headers = content["parameters"], _trial_headers(content["parameters"])
    lines += ["Best trial and baseline", tabulate([_trial_line(t, names) for t in pair], headers=headers), ""]
    lines += ["Top 10 trials", tabulate([_trial_line(t, names) for t in content["top"]], headers=headers)]
    x, by = content["axes"]["x"], content["axes"]["group_by"]
    if content["regularizers"]:
        regs = [
            [_group_value(r[by]), r[x], r["trials"], _fmt(r["best_val_acc"]), _fmt(r["median_val_acc"]), _fmt(r["median_gap"], 3)]
            for r in content["regularizers"]
        ]  # fmt: skip
        heads = [by, x, "trials", "best val_acc", "median val_acc", "median gap"]
        lines += ["", "Regularizers", tabulate(regs, headers=heads)]
    for title, (headers, rows) in _extra_tables(content):
        lines += ["", title, tabulate(rows, headers=headers)]
    return "\n".join(lines)


def _extra_tables(content: dict[str, Any]) -> list[tuple[str, tuple[list[str], list[list[Any]]]]]:
    """The search per group, the confirmed configurations (when there are any) and the trade-off front, as (title, (headers, rows))."""
    tables = []
    if content["groups"]:
        effort = [[g["value"], g["complete"], g["pruned"], g["epochs"]] for g in content["groups"]]
        title = f"Search per {content['groups'][0]['by']} group: finished trials and epochs trained"
        tables.append((title, (["value", "complete", "pruned", "epochs"], effort)))
    if content["confirmed"]:
        names = content["parameters"]
        rows = [
            [c["trial"], *_params(c["params"], names), len(c["values"]), _fmt(c["mean"]),
             "-" if c["ci95"] is None else f"{c['ci95'][0]:.4f}-{c['ci95'][1]:.4f}", _fmt(c["gap_mean"], 3),
             _fmt(c.get("p_value"), 3), " ".join(f"{v:.4f}" for v in c["values"])]
            for c in content["confirmed"]
        ]  # fmt: skip
        headers = [
            "trial",
            *names,
            "seeds",
            "mean",
            "95% CI",
            "mean gap",
            "p",
            "values",
        ]
        tables.append(
            ("Confirmed over seeds (p: the winner against the runner-up; others against the winner)", (headers, rows))
        )
    names = content["parameters"]
    front = [
        [t["number"], _fmt(t["val_acc"]), _fmt(t["overfit_gap"], 3), *_params(t["params"], names)]
        for t in content["pareto"]
    ]
    if front:
        headers = ["trial", "val_acc", "gap", *names]
        tables.append(("Trade-off: no other trial has both a higher val_acc and a smaller gap", (headers, front)))
    return tables


def trials_csv(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    attrs = [TrialRecord.from_frozen(t).to_attrs() for t in trials]
    attr_keys = sorted({k for a in attrs for k in a})
    params = list(StudyRecord.from_study(study).space)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", "value", *params, "datetime_start", "datetime_complete", *attr_keys])
    for t, stored in zip(trials, attrs, strict=True):
        values = search.params_of(t)
        writer.writerow(
            [t.number, t.state.name, t.value, *(values.get(p) for p in params), t.datetime_start, t.datetime_complete]
            + [json.dumps(stored[k]) if isinstance(stored.get(k), (dict, list)) else stored.get(k) for k in attr_keys]
        )
    return out.getvalue()


def _html_table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(f'<td>{html.escape(str(c))}</td>' for c in row)}</tr>" for row in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def page(content: dict[str, Any], study: optuna.Study) -> str:
    """One HTML file with the summary and every figure; plotly's JS is inlined so it opens offline."""
    sections = []
    for name, figure in figures.all_figures(study).items():
        div = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{name}")
        sections.append(f'<section class="figure" data-figure="{name}">{div}</section>')
    top = "".join(
        f"<tr>{''.join(f'<td>{html.escape(str(c))}</td>' for c in _trial_line(t, content['parameters']))}</tr>"
        for t in content["top"]
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _trial_headers(content["parameters"]))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sweeper report: {html.escape(content["study"])}</title>
<script>{plotly.offline.get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}</style></head>
<body>
<h1>Study {html.escape(content["study"])}</h1>
<p>storage {html.escape(content["storage"])} &middot; {content["trials"]} trials &middot; budget {content["budget"]}</p>
<p id="answer">{html.escape(content["answer"])}</p>
<p id="models">{html.escape(_models_line(content))}</p>
<h2>Top 10 trials</h2><table><tr>{head}</tr>{top}</table>
{"".join(_html_table(title, headers, rows) for title, (headers, rows) in _extra_tables(content))}
{"".join(sections)}
<script type="application/json" id="summary">{html.escape(json.dumps(content))}</script>
</body></html>
"""
