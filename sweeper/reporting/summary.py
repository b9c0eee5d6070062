"""A study → the tutorial's answer as plain data: trial rows, the summary, the regularizer table,
the confirmed configurations with their uncertainty, and the val_acc-against-gap trade-off front.

`sweeper report` prints it (terminal, JSON, CSV, HTML); `sweeper.reporting.figures` draws from the same
rows. The search's best and tables leave confirmation runs out (they would favour lucky seeds);
those are judged apart, per configuration. Everything here reads; nothing writes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.fleet import comparison, search
from sweeper.reporting import uncertainty
from sweeper.reporting.wording import describe, describe_params
from sweeper.storage.records import StudyRecord, TrialRecord

X_BINS = 3
LEARNED_MARGIN = 0.03
"""Groups this far below the best group's median val_acc are not named "least overfitting": about
two standard errors of one val_acc on the tutorial's validation split (1,551 images)."""


@dataclass(frozen=True)
class Row:
    """One trial, flattened to what the tables and charts need."""

    number: int
    state: str
    val_acc: float | None
    params: dict[str, Any]
    best_epoch: int | None
    gap: float | None
    baseline: bool
    trial: FrozenTrial
    model: str | None = None
    """"kept" (in the store), "removed" (fell out of the best kept), or None (no model saved)."""
    confirms: int | None = None
    """For a confirmation run: the number of the trial it re-runs with another seed."""

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "PRUNED")


def rows(study: optuna.Study) -> list[Row]:
    out = []
    removed = StudyRecord.from_study(study).models_removed
    for trial in study.get_trials(deepcopy=False):
        params, attrs = search.params_of(trial), TrialRecord.from_frozen(trial)
        out.append(
            Row(
                number=trial.number,
                state=trial.state.name,
                val_acc=trial.value,
                params=params,
                best_epoch=attrs.best_epoch,
                gap=attrs.overfit_gap,
                baseline=bool(attrs.baseline),
                trial=trial,
                model=("removed" if trial.number in removed else "kept") if attrs.model_artifact_id else None,
                confirms=attrs.confirms if attrs.is_confirmation else None,
            )
        )
    return out


def summary(study: optuna.Study, storage_label: str) -> dict[str, Any]:
    """Everything `sweeper report` prints, as plain data (the JSON format is exactly this)."""
    all_rows, record = rows(study), StudyRecord.from_study(study)
    search_rows = [r for r in all_rows if r.confirms is None]  # confirmation runs are judged apart
    finished = sorted(
        (r for r in search_rows if r.finished and r.val_acc is not None), key=lambda r: -(r.val_acc or 0.0)
    )
    complete = [r for r in finished if r.state == "COMPLETE"]
    best = complete[0] if complete else (finished[0] if finished else None)
    baseline = next((r for r in finished if r.baseline), None)
    counts = {state.name.lower(): sum(r.state == state.name for r in all_rows) for state in TrialState}
    x, by = record.chart_axes()
    regularizers = regularizer_table(complete or finished, record)
    confirmed = confirmed_table(all_rows, record.compared_parameter)
    return {
        "study": study.study_name,
        "parameters": list(record.space),
        "axes": {"x": x, "group_by": by},
        "storage": storage_label,
        "budget": record.budget,
        "trials": len(all_rows),
        "counts": counts,
        "nonfinite_loss_trials": sum(
            "loss became" in str(TrialRecord.from_frozen(r.trial).prune_reason or "") for r in all_rows
        ),
        "best": _trial_json(best),
        "baseline": _trial_json(baseline),
        "top": [_trial_json(r) for r in finished[:10]],
        "regularizers": regularizers,
        "groups": comparison.effort(record.compared_parameter, [r.trial for r in search_rows]),
        "answer": answer(best, baseline, regularizers, x, by)
        + (" " + confirmed_sentence(confirmed, best, record.compared_parameter) if best else ""),
        "confirmed": confirmed,
        "pareto": [_trial_json(r) for r in pareto(complete)],
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
        "params": row.params,
        "best_epoch": row.best_epoch,
        "overfit_gap": row.gap,
        "baseline": row.baseline,
        "model": row.model,
    }


def _edges(record: StudyRecord, x: str) -> list[float]:
    spec = record.space.get(x, {})
    low, high = spec.get("low", 0.0), spec.get("high", 1.0)
    step = (high - low) / X_BINS
    return [round(low + i * step, 6) for i in range(X_BINS + 1)]


def regularizer_table(finished: list[Row], record: StudyRecord) -> list[dict[str, Any]]:
    """Each group (batch normalization on/off) × x bins (dropout): trials, best and median val_acc, median gap."""
    x, by = record.chart_axes()
    if x is None or by is None:
        return []
    edges = _edges(record, x)
    groups = sorted(record.space[by]["choices"], key=str)
    table = []
    for group in groups:
        for low, high in zip(edges, edges[1:], strict=False):
            last = high == edges[-1]
            members = [
                r for r in finished
                if r.params.get(by) == group and r.params.get(x) is not None
                and low <= r.params[x] and (r.params[x] <= high if last else r.params[x] < high)
            ]  # fmt: skip
            accs = [r.val_acc for r in members if r.val_acc is not None]
            gaps = [r.gap for r in members if r.gap is not None]
            table.append(
                {
                    by: group,
                    x: f"{low:.2f}-{high:.2f}",
                    "trials": len(members),
                    "best_val_acc": max(accs) if accs else None,
                    "median_val_acc": statistics.median(accs) if accs else None,
                    "median_gap": statistics.median(gaps) if gaps else None,
                }
            )
    return table


def answer(best: Row | None, baseline: Row | None, table: list[dict[str, Any]], x: str | None, by: str | None) -> str:
    """The tutorial's question, answered in a sentence or two."""
    if best is None:
        return "No finished trials yet."
    text = f"Best val_acc {best.val_acc:.4f}: {describe_params(best.params, by)} (trial {best.number}" + (
        f", gap {best.gap:.3f} at epoch {best.best_epoch})" if best.gap is not None else ")"
    )
    if baseline is not None and baseline.val_acc is not None:
        text += f"; the baseline ({describe_params(baseline.params)}) reached {baseline.val_acc:.4f}."
    else:
        text += "."
    if x is not None and by is not None:
        text += _least_overfitting(table, x, by)
    return text


def _least_overfitting(table: list[dict[str, Any]], x: str, by: str) -> str:
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
        f" group's ({top:.4f}): {_group(calm, x, by)} (median gap {calm['median_gap']:.3f},"
        f" median val_acc {calm['median_val_acc']:.4f})."
    )
    calmer = [row for row in groups if row not in learned and row["median_gap"] < calm["median_gap"]]
    if calmer:
        left = min(calmer, key=lambda row: row["median_gap"])
        text += (
            f" {_group(left, x, by)[0].upper()}{_group(left, x, by)[1:]} has a smaller median gap ({left['median_gap']:.3f})"
            f" but learned less (median val_acc {left['median_val_acc']:.4f})."
        )
    return text


def _group(row: dict[str, Any], x: str, by: str) -> str:
    return f"{describe(by, row[by])} with {x} {row[x]}"


def confirmed_table(all_rows: list[Row], by: str) -> list[dict[str, Any]]:
    """Each confirmed configuration over all its seeds (the original run first), best mean first.

    The winner's `p_value` is against the runner-up (the best configuration in another group of
    `by`, batch normalization on or off); every other entry's is against the winner.
    """
    by_number = {r.number: r for r in all_rows}
    runs: dict[int, list[Row]] = {}
    for row in all_rows:
        if row.confirms is not None and row.state == "COMPLETE" and row.confirms in by_number:
            runs.setdefault(row.confirms, []).append(row)
    table: list[dict[str, Any]] = []
    for number, extra in runs.items():
        original = by_number[number]
        if original.val_acc is None:
            continue
        seeds = [original, *sorted(extra, key=lambda r: r.number)]
        est = uncertainty.estimate([r.val_acc for r in seeds if r.val_acc is not None])  # COMPLETE: all
        gaps = [r.gap for r in seeds if r.gap is not None]
        table.append({
            "trial": number, "params": original.params, "baseline": original.baseline,
            "runs": [r.number for r in seeds], "values": est.values, "mean": est.mean,
            "ci95": list(est.ci95) if est.ci95 else None,
            "gap_mean": statistics.fmean(gaps) if gaps else None,
        })  # fmt: skip
    table.sort(key=lambda entry: -entry["mean"])
    if table:
        winner = table[0]
        rival = next((e for e in table[1:] if e["params"].get(by) != winner["params"].get(by)), None)
        winner["p_value"] = uncertainty.welch_p(winner["values"], rival["values"]) if rival else None
        for entry in table[1:]:
            entry["p_value"] = uncertainty.welch_p(winner["values"], entry["values"])
    return table


def confirmed_sentence(confirmed: list[dict[str, Any]], best: Row | None, by: str) -> str:
    """The answer's uncertainty: the confirmed lead and its p-value, or a single run's standard error."""
    if not confirmed or len(confirmed[0]["values"]) < 2:
        images = TrialRecord.from_frozen(best.trial).val_images if best is not None else None
        if best is None or best.val_acc is None or not images:
            return "Unconfirmed: one run per configuration."
        se = uncertainty.single_run_se(best.val_acc, images)
        return (
            f"Unconfirmed: one run per configuration; a single val_acc on "
            f"{images} validation images has a standard error of about {se:.3f}."
        )
    winner = confirmed[0]
    text = f"Confirmed over {len(winner['values'])} seeds: {_config(winner, by)}: {_mean_ci(winner)}"
    leads = []
    rival = next((e for e in confirmed[1:] if e["params"].get(by) != winner["params"].get(by)), None)
    baseline = next((e for e in confirmed if e["baseline"]), None)
    rival_label = "the best with " + describe(by, rival and rival["params"].get(by))
    if rival is not None and rival is baseline:
        rival_label, baseline = rival_label + ", the baseline", None
    for label, other in ((rival_label, rival), ("the baseline", baseline)):
        if other is not None and other is not winner:
            p = uncertainty.welch_p(winner["values"], other["values"])
            leads.append(
                f"{label} (trial {other['trial']}: {_mean_ci(other)}) by {winner['mean'] - other['mean']:.3f}"
                + ("" if p is None else f", p = {p:.2g}")
            )
    return (
        text + ("; ahead of " + " and of ".join(leads) if leads else "") + " (± is the 95% interval, Welch's t-test)."
    )


def _config(entry: dict[str, Any], by: str) -> str:
    return f"{describe_params(entry['params'], by)} (trial {entry['trial']})"


def _mean_ci(entry: dict[str, Any]) -> str:
    if entry["ci95"] is None:
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} ± {(entry['ci95'][1] - entry['ci95'][0]) / 2:.3f}"


def pareto(complete: list[Row]) -> list[Row]:
    """The COMPLETE search trials no other beats on both val_acc and overfitting gap, by gap."""
    points = [(r.number, r.val_acc, r.gap) for r in complete if r.val_acc is not None and r.gap is not None]
    by_number = {r.number: r for r in complete}
    return [by_number[n] for n in uncertainty.pareto_front(points)]
