"""The live view's arithmetic and text (the sweep test shows it on a real terminal)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from sweeper.cli.live_view import LiveView, StudyStatus
from sweeper.fleet.events import EpochEnded, TrialEnded, TrialStarted


def _view() -> LiveView:
    view = LiveView("demo", budget=10, epochs=4)
    view.handle(TrialStarted("a:1", 3, "dropout=0.3", 4))
    view.handle(TrialStarted("b:2", 4, "dropout=0.4", 4))
    view.handle(EpochEnded("a:1", 3, 1, 4, 0.50, 0.50, 10.0))
    view.handle(EpochEnded("b:2", 4, 3, 4, 0.40, 0.45, 20.0))
    view.status = StudyStatus(finished=2, running=2, pruned=1, best_value=0.61, best_trial=1)
    return view


def test_the_eta_spreads_the_remaining_epochs_over_the_running_workers() -> None:
    # 10 budget - 2 finished - 2 running = 6 waiting trials x 4 epochs, plus 3 + 1 epochs of the running
    # ones = 28 epochs at the mean of 15 s, over 2 workers.
    assert _view().eta_seconds() == 28 * 15.0 / 2


def test_no_eta_before_an_epoch_has_been_timed() -> None:
    view = LiveView("demo", budget=10, epochs=4)
    view.handle(TrialStarted("a:1", 0, "dropout=0.3", 4))
    assert view.eta_seconds() is None
    assert "ETA after the first epoch" in view.summary_line()


def test_it_shows_a_line_per_worker_and_the_study_progress() -> None:
    view = _view()
    view.handle(TrialEnded("b:2", 4, "PRUNED"))
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(view)
    text = console.export_text()
    assert re.search(r"^a:1 +3 +dropout=0\.3 +1/4 +0\.5000 +0\.5000 +10\.0", text, re.M), text
    assert re.search(r"^b:2 +- +\(between trials\)", text, re.M), text
    assert "study demo: 2/10 finished, 1 pruned, best val_acc 0.6100 (trial 1) | ETA" in text
