"""`sweeper sweep`'s live view on a terminal: a line per worker, the study's progress and an ETA.

Fed by the workers' events (`sweeper.fleet.events`) and by the study as the storage holds it (other
hosts' workers count too). The ETA assumes every remaining trial runs all its epochs at the mean
epoch time seen so far, spread over the running workers: pruning only ever makes it shorter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sweeper.fleet.events import EpochEnded, Event, TrialEnded, TrialStarted
from sweeper.storage.studies import value_of


@dataclass(frozen=True)
class StudyStatus:
    finished: int
    running: int
    pruned: int
    best_value: float | None
    best_trial: int | None


def study_status(study: optuna.Study) -> StudyStatus:
    """The study's counts and best trial, read from the storage now."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = max(complete, key=value_of, default=None)
    return StudyStatus(
        finished=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
    )


@dataclass
class _WorkerLine:
    trial: int
    params: str
    epochs: int
    epoch: int = 0
    val_acc: float = math.nan
    best: float = math.nan
    seconds: float = math.nan


@dataclass
class LiveView:
    study_name: str
    budget: int
    epochs: int
    status: StudyStatus | None = None
    """The latest read of the study; None until the workers have created it."""
    _workers: dict[str, _WorkerLine | None] = field(default_factory=dict)
    _epoch_seconds: list[float] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)

    def handle(self, event: Event) -> None:
        match event:
            case TrialStarted(worker, trial, params, epochs):
                self._workers[worker] = _WorkerLine(trial, params, epochs)
            case EpochEnded(worker, trial, epoch, epochs, val_acc, best, seconds):
                line = self._workers.get(worker)
                if line is None or line.trial != trial:
                    line = self._workers[worker] = _WorkerLine(trial, "", epochs)
                line.epoch, line.val_acc, line.best, line.seconds = epoch, val_acc, best, seconds
                self._epoch_seconds.append(seconds)
            case TrialEnded(worker):
                self._workers[worker] = None

    def eta_seconds(self) -> float | None:
        """At most this long to the budget, or None before the first epoch has been timed."""
        if not self._epoch_seconds:
            return None
        running = [line for line in self._workers.values() if line is not None]
        finished = self.status.finished if self.status else 0
        waiting = max(0, self.budget - finished - len(running))
        epochs_left = waiting * self.epochs + sum(line.epochs - line.epoch for line in running)
        per_epoch = sum(self._epoch_seconds) / len(self._epoch_seconds)
        return epochs_left * per_epoch / max(1, len(running))

    def __rich__(self) -> RenderableType:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("worker", "trial", "params", "epoch", "val_acc", "best", "s/epoch"):
            table.add_column(column, justify="right" if column not in ("worker", "params") else "left")
        for worker, line in sorted(self._workers.items()):
            if line is None:
                table.add_row(worker, "-", "(between trials)", "", "", "", "")
            else:
                table.add_row(
                    worker, str(line.trial), line.params, f"{line.epoch}/{line.epochs}",
                    _number(line.val_acc), _number(line.best), _number(line.seconds, ".1f"),
                )  # fmt: skip
        return Group(table, Text(self.summary_line()))

    def summary_line(self) -> str:
        status = self.status
        if status is None:
            head = f"study {self.study_name}: waiting for the workers to open it"
        else:
            best = (
                f"best val_acc {status.best_value:.4f} (trial {status.best_trial})"
                if status.best_value is not None
                else "no completed trial yet"
            )
            head = f"study {self.study_name}: {status.finished}/{self.budget} finished, {status.pruned} pruned, {best}"
        eta = self.eta_seconds()
        tail = "ETA after the first epoch" if eta is None else f"ETA {_duration(eta)} at most"
        return f"{head} | {tail} | {_duration(time.monotonic() - self._started)} elapsed"


def _number(value: float, spec: str = ".4f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
