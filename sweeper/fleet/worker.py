"""The worker: claims trials from the shared study and runs them until the budget is met.

Only this process talks to the database. Its parts: `fleet` (claims, budget, reaping),
`trial_runner` (one trial with the training child), `recording` (results and retries), and
`heartbeat` (a thread that keeps the running trial alive). This module loops, counts failures
and handles SIGTERM and Ctrl-C.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import optuna

from sweeper import fleet
from sweeper.artifacts.kept_models import ModelKeeper
from sweeper.fleet import ClaimStatus, Reaper
from sweeper.fleet.events import Event
from sweeper.fleet.heartbeat import Heartbeat, Reach
from sweeper.fleet.recording import Recorder
from sweeper.fleet.trial_runner import Outcome, TrainingChild, TrialRunner
from sweeper.stopping import stopped_exit_code
from sweeper.storage import Store, optuna_internals, retry
from sweeper.studyfile import StudySpec
from sweeper.training import backends
from sweeper.training.gpus import GpuSlot
from sweeper.training.trainer_process import TrainingProcess

log = logging.getLogger("sweeper.worker")


def default_name() -> str:
    """`host:pid`, which tells the workers of a host apart. In a container the worker is PID 1, or
    the first child of an init (compose's `init: true`), and containers with host networking share
    the host's name and that PID: a random suffix tells them apart."""
    pid = os.getpid()
    in_container = pid == 1 or os.getppid() == 1
    return f"{socket.gethostname()}:{pid}-{secrets.token_hex(3)}" if in_container else f"{socket.gethostname()}:{pid}"


T = TypeVar("T")
MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class Worker:
    spec: StudySpec
    store: Store
    study: optuna.Study
    data_folder: Path
    n_trials: int | None = None
    gpu: GpuSlot = field(default_factory=lambda: GpuSlot(None))
    backend: str = backends.DEFAULT
    stop: threading.Event = field(default_factory=threading.Event)
    name: str = field(default_factory=lambda: default_name())
    child: TrainingChild | None = None
    """The training process; benchmarks pass one that sleeps instead of training."""
    on_event: Callable[[Event], None] = lambda _event: None
    """Told of each trial's start, epochs and end (`--events json` writes them for `sweeper sweep`)."""
    epoch_lines: bool = True
    keeper: ModelKeeper | None = None
    """Keeps COMPLETE trials' models in the study's artifact store; None (as benchmarks run) keeps none."""
    verbose: bool = False
    """Let the training child's backend start-up INFO lines through to the log."""
    _stop_reason: str = ""

    def __post_init__(self) -> None:
        fleet_spec = self.spec.fleet
        self.child = self.child or TrainingProcess(
            self.data_folder,
            fleet_spec.trials_per_child,
            fleet_spec.child_growth_mb,
            self.gpu.child_env(self.backend),
            verbose=self.verbose,
        )
        self._reach = Reach()
        self._heartbeat = Heartbeat(self.store.storage, fleet_spec.heartbeat_seconds, self._reach)
        self._reaper = Reaper(self.store, self.study, self.spec, self._reach, self.name)
        self._runner = TrialRunner(
            spec=self.spec,
            child=self.child,
            recorder=Recorder(self.store, self.study, fleet_spec.max_retries, self._db),
            retrying=self._db,
            stop=self.stop,
            stop_reason=lambda: self._stop_reason,
            progress=lambda: fleet.progress(self.store, self.study, self.spec),
            name=self.name,
            gpu_label=self.gpu.label,
            on_event=self.on_event,
            epoch_lines=self.epoch_lines,
            keeper=self.keeper,
        )

    def request_stop(self, reason: str) -> None:
        """Finish cleanly: the current trial is marked FAIL and queued again, then the worker exits 0.

        If the storage does not answer within the stop grace, exit anyway: the trial's heartbeat
        then lapses and another worker (or this one, restarted) reaps and retries it.
        """
        if self.stop.is_set():
            return
        self._stop_reason = reason
        self.stop.set()
        watchdog = threading.Timer(self.spec.fleet.stop_grace_seconds, self._force_exit)
        watchdog.daemon = True
        watchdog.start()

    def _force_exit(self) -> None:
        log.warning("%s: storage did not answer within the stop grace; exiting now", self.name)
        if self.child is not None:
            self.child.kill()
        os._exit(stopped_exit_code())

    def _db(self, action: Callable[[], T], what: str) -> T:
        return retry.retrying(action, what, url=self.store.url, on_transient=self._reach.failed)

    def run(self) -> int:
        """Claim and run trials until the budget is met, N trials are done, or a stop is asked."""
        ran = failures = 0
        self._heartbeat.start()
        self._reaper.start()  # so a worker, lone or one of many, revives dead workers' trials while it trains
        try:
            while not self.stop.is_set() and (self.n_trials is None or ran < self.n_trials):
                claim = self._db(lambda: fleet.claim(self.store, self.study, self.spec, self.name), "claiming a trial")
                if claim.status == ClaimStatus.DONE:
                    log.info(
                        "%s: study %s is complete (%d/%d trials finished)",
                        self.name, self.spec.name, claim.progress.finished, claim.progress.budget,
                    )  # fmt: skip
                    break
                if claim.status == ClaimStatus.FULL:
                    self.stop.wait(self.spec.fleet.poll_seconds)  # a running trial may yet fail
                    continue
                trial = claim.trial
                if trial is None:
                    raise RuntimeError("a TRIAL claim carries its trial")
                self._heartbeat.hold(optuna_internals.trial_id(trial))
                try:
                    start = functools.partial(fleet.start, trial, self.study, self.spec, self.name)
                    self._db(start, f"starting trial {trial.number}")  # an outage here keeps the trial
                    outcome = self._runner.run(trial)
                finally:
                    self._heartbeat.release()
                ran += 1
                if outcome != Outcome.LOST:
                    failures = failures + 1 if outcome == Outcome.FAILED else 0
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    log.error("%s: %d trials in a row failed; stopping (see their fail_reason)", self.name, failures)
                    return 1
        finally:
            self._reaper.stop()
            self._heartbeat.stop()
            if self.child is not None:
                self.child.close()
            if self.keeper:
                self.keeper.close()
        if self.stop.is_set():
            log.info("%s: stopped (%s)", self.name, self._stop_reason)
            return stopped_exit_code()
        return 0


def install_signal_handlers(on_stop: Callable[[str], None]) -> None:
    """SIGTERM (docker stop) and Ctrl-C both end the current trial cleanly and exit 0 (or
    `SWEEPER_STOPPED_EXIT_CODE`)."""

    def handler(signum: int, _frame: object) -> None:
        on_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
