"""The report's and the dashboard's charts, drawn from the study 0.1.0 wrote."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from sweeper.reporting import figures
from tests.conftest import ROOT


@pytest.fixture
def released(tmp_path: Path) -> optuna.Study:
    shutil.copy(ROOT / "tests" / "fixtures" / "v0.1.0" / "smoke.db", tmp_path / "smoke.db")
    return optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'smoke.db'}")


def test_every_chart_is_drawn_from_the_trials(released: optuna.Study) -> None:
    charts = figures.all_figures(released)
    assert set(charts) == {
        "regularizer", "gap", "progress", "confirmed", "tradeoff", "learning_rate", "curves", "importance", "timeline"
    }  # fmt: skip
    names = {trace.name for trace in charts["curves"].data}
    assert "best (trial 3) val_acc" in names and "baseline (trial 0) val_acc" in names
    lanes = {lane for trace in charts["timeline"].data for lane in trace.y}
    assert len(lanes) == 2 and "?" not in lanes  # the two workers of `sweeper sweep --workers 2`
    plotted = sorted(y for trace in charts["regularizer"].data for y in trace.y if y is not None)
    assert plotted[-1] == pytest.approx(max(t.value for t in released.trials if t.value is not None))


def test_the_live_charts_are_the_dashboards_subset(released: optuna.Study) -> None:
    assert set(figures.live_figures(released)) == {"regularizer", "gap", "progress", "confirmed", "tradeoff"}
