"""One trial, start to end: the child trains it, the pruner judges each epoch, the recorder stores the end.

The runner talks to any `TrainingChild` (the real one is `sweeper.training.trainer_process.TrainingProcess`)
and reports each epoch to Optuna with `trial.report`, asking the pruner only at epochs where it
can decide (`search.can_prune_at`). A loss that turns NaN or infinite ends the trial as PRUNED.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import optuna
from optuna.trial import TrialState

from sweeper.artifacts.kept_models import ModelKeeper
from sweeper.fleet import Progress, search
from sweeper.fleet.events import EpochEnded, Event, TrialEnded, TrialStarted, epoch_line
from sweeper.fleet.recording import Recorder, Retrying
from sweeper.storage import records
from sweeper.storage.records import TrialRecord
from sweeper.studyfile import StudySpec
from sweeper.training.protocol import METRICS, ChildLost, ChildMessage, Done, Epoch, Failed, Job

log = logging.getLogger("sweeper.trial_runner")


class TrainingChild(Protocol):
    def start(self, job: Job) -> None: ...
    def receive(self, timeout: float) -> ChildMessage | None: ...
    def reply(self, keep_going: bool) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


class Outcome(enum.Enum):
    """How a trial ended for this worker; only FAILED counts towards stopping a failing worker."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    """The training failed: the child crashed, raised, or its results were unusable."""
    LOST = "lost"
    """Another worker reaped the trial (its heartbeat had lapsed); its retry runs instead."""
    STOPPED = "stopped"
    """The worker was asked to stop; the trial is FAIL and queued again."""


def should_stop(trial: optuna.trial.Trial, spec: StudySpec, val_acc: float, epoch: int) -> bool:
    """Report the epoch's val_acc to Optuna; True if the pruner says stop (never for a confirmation run)."""
    trial.report(val_acc, epoch)
    if not search.can_prune_at(spec, epoch) or records.is_confirmation(trial):
        return False  # the attributes are read only where the pruner could decide
    return trial.should_prune()


@dataclass
class TrialRunner:
    spec: StudySpec
    child: TrainingChild
    recorder: Recorder
    retrying: Retrying
    stop: threading.Event
    stop_reason: Callable[[], str]
    progress: Callable[[], Progress]
    name: str
    gpu_label: str
    on_event: Callable[[Event], None] = lambda _event: None
    """Told of each trial's start, epochs and end (`sweeper sweep`'s live view listens here)."""
    epoch_lines: bool = True
    """Log a line per epoch; the trial's start and end are logged either way."""
    keeper: ModelKeeper | None = None
    """Keeps COMPLETE trials' models; None keeps none."""

    def run(self, trial: optuna.trial.Trial) -> Outcome:
        try:
            state = self._train_and_record(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker reaped this trial (and queued its retry): no heartbeat came from here
            # for a whole stale limit. Abandon it rather than write to a finished trial.
            self.child.kill()
            log.warning(
                "%s: trial %d was reaped by another worker (no heartbeat from here for %ss); its retry runs instead",
                self.name, trial.number, self.spec.fleet.stale_after_seconds,
            )  # fmt: skip
            return Outcome.LOST
        finally:
            if self.keeper:
                self.keeper.discard(trial.number)  # a pruned, failed or abandoned trial's model file
        if self.stop.is_set() and state == TrialState.FAIL:
            return Outcome.STOPPED
        return {TrialState.COMPLETE: Outcome.COMPLETE, TrialState.PRUNED: Outcome.PRUNED}.get(state, Outcome.FAILED)

    def _train_and_record(self, trial: optuna.trial.Trial) -> TrialState:
        training = self.spec.training
        seed = search.trial_seed(self.spec.sampler.seed, trial.number)
        params = {name: trial.params[name] for name in self.spec.space.distributions()}
        log.info("%s: trial %d started: %s", self.name, trial.number, search.format_params(params))
        self.on_event(TrialStarted(self.name, trial.number, search.format_params(params), training.epochs))
        started = time.monotonic()
        model_path = str(self.keeper.path_for(trial.number)) if self.keeper else None
        job = Job(
            params, training.epochs, training.batch_size, seed, training.jit_compile, training.mixed_precision,
            training.run_eagerly, model_path, self.spec.model.builder if self.spec.model else None, str(self.spec.folder),
            training.steps_per_execution,
        )  # fmt: skip
        self.child.start(job)
        history: dict[str, list[float]] = defaultdict(list)
        record = TrialRecord(seed=seed, worker=self.name, host=socket.gethostname(), gpu=self.gpu_label)
        pruned_because = ""
        while True:
            if self.stop.is_set():
                self.child.kill()
                return self._fail(trial, record, history, f"worker stopped ({self.stop_reason()})", started)
            message = self.child.receive(timeout=min(0.5, self.spec.fleet.poll_seconds))
            match message:
                case None:
                    continue  # quiet for a moment: look at the stop again
                case ChildLost(reason):
                    return self._fail(trial, record, history, reason, started)
                case Failed(reason):
                    self.child.kill()
                    return self._fail(trial, record, history, reason, started)
                case Done(summary):
                    state = TrialState.PRUNED if pruned_because else TrialState.COMPLETE
                    ended = record.merged(summary)
                    ended = dataclasses.replace(ended, prune_reason=pruned_because) if pruned_because else ended
                    return self._finish(trial, state, ended, history, started)
                case Epoch():
                    pruned_because = self._judge(trial, message, history)
                    self._tell_epoch(trial, message, history)
                    self.child.reply(keep_going=not pruned_because)

    def _judge(self, trial: optuna.trial.Trial, epoch: Epoch, history: dict[str, list[float]]) -> str:
        """Record the epoch; the reason to stop the trial now, or "" to go on."""
        for key in METRICS:
            history[key].append(epoch.metric(key))
        history["epoch_seconds"].append(epoch.seconds)
        val_acc, loss = epoch.metric("val_acc"), epoch.metric("loss")
        if not (math.isfinite(loss) and math.isfinite(val_acc)):
            return f"loss became {loss} at epoch {epoch.epoch}"
        if self.retrying(lambda: should_stop(trial, self.spec, val_acc, epoch.epoch), "reporting an epoch"):
            return f"pruned by {self.spec.pruner.type} at epoch {epoch.epoch}"
        return ""

    def _tell_epoch(self, trial: optuna.trial.Trial, epoch: Epoch, history: dict[str, list[float]]) -> None:
        finite = [value for value in history["val_acc"] if math.isfinite(value)]
        event = EpochEnded(
            self.name, trial.number, epoch.epoch, self.spec.training.epochs,
            epoch.metric("val_acc"), max(finite, default=float("nan")), epoch.seconds,
        )  # fmt: skip
        if self.epoch_lines:
            log.info("%s", epoch_line(event))
        self.on_event(event)

    def _finish(
        self, trial: optuna.trial.Trial, state: TrialState, record: TrialRecord, history: dict, started: float
    ) -> TrialState:
        keeper = self.keeper
        if keeper and state == TrialState.COMPLETE:
            record = record.merged(self.retrying(lambda: keeper.keep(trial), "keeping the model").to_attrs())
        frozen = self.recorder.finish(trial, state, record, history, started)
        if keeper and record.model_saved:
            self.retrying(lambda: keeper.trim(trial.study), "removing models beyond the best kept")
        value = "-" if frozen.value is None else f"{frozen.value:.4f}"
        now = self.retrying(self.progress, "counting trials")
        log.info(
            "%s: trial %d %s val_acc=%s epochs=%d %.1fs [%d/%d finished]",
            self.name, frozen.number, frozen.state.name, value, len(history.get("val_acc", [])),
            time.monotonic() - started, now.finished, now.budget,
        )  # fmt: skip
        self.on_event(TrialEnded(self.name, frozen.number, frozen.state.name))
        return frozen.state

    def _fail(
        self, trial: optuna.trial.Trial, record: TrialRecord, history: dict, reason: str, started: float
    ) -> TrialState:
        self.recorder.fail(trial, record, history, reason, started)
        log.warning("%s: trial %d FAIL: %s (queued again unless out of retries)", self.name, trial.number, reason)
        self.on_event(TrialEnded(self.name, trial.number, TrialState.FAIL.name))
        return TrialState.FAIL
