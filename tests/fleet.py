"""Helpers for fleet tests: workers as real processes with their logs, and waiting on the study."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweeper import studyfile
from sweeper.storage import urls
from tests.conftest import ROOT, sweeper_command

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class WorkerProcess:
    def __init__(self, study_path: Path, url: str, env: dict, log_dir: Path, *extra: str) -> None:
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            sweeper_command("worker", str(study_path), "--storage", url, *extra),
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def name(self) -> str:
        return f"{os.uname().nodename}:{self.process.pid}"

    def log(self) -> str:
        return self.log_path.read_text()

    def training_child(self) -> int | None:
        """PID of the worker's training child, if one is running."""
        for line in subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(self.process.pid)],
                                   capture_output=True, text=True).stdout.splitlines():  # fmt: skip
            pid, _, args = line.strip().partition(" ")
            if "spawn_main" in args:
                return int(pid)
        return None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill_all(self) -> None:
        child = self.training_child()
        if child:
            os.kill(child, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


def proc_status(pid: int, field: str) -> str:
    """One field of `/proc/PID/status` (`VmRSS`, `SigCgt`), as the kernel writes it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return value.strip()
    raise AssertionError(f"no {field} in /proc/{pid}/status")


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as stored now. Tests poll this many times a second, so each URL gets one
    storage (its schema checks run once), without a pool: each read opens and closes its own
    connection, and none is left idle while PostgreSQL's max_connections is shared by every test."""
    try:
        return _read(url, name)
    except optuna.exceptions.StorageInternalError:
        # The database behind the URL was made again (compose's `down -v`, then `up`): its new
        # schema comes with a new storage.
        del _STORAGES[url]
        return _read(url, name)


def _read(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(
            urls.resolve_url(url), engine_kwargs={"poolclass": sqlalchemy.pool.NullPool}
        )
    try:
        return optuna.load_study(study_name=name, storage=_STORAGES[url]).get_trials()
    except KeyError:
        return []


def wait_for(condition: Callable[[], object], timeout: float = 240, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


PARAMS = set(
    studyfile.load(ROOT / "studies" / "smoke.toml").space.distributions()
)  # the fleet tests' studies copy smoke.toml


def running_trial_of(url: str, name: str, worker: WorkerProcess) -> optuna.trial.FrozenTrial | None:
    """The worker's running trial once all its parameters are drawn (one by one, just after the claim)."""
    for trial in trials(url, name):
        if (
            trial.state == TrialState.RUNNING
            and trial.user_attrs.get("worker") == worker.name
            and set(trial.params) == PARAMS
        ):
            return trial
    return None


def assert_exact_budget(url: str, name: str, budget: int) -> list[optuna.trial.FrozenTrial]:
    all_trials = trials(url, name)
    states = [t.state for t in all_trials]
    assert states.count(TrialState.RUNNING) == 0, states
    assert states.count(TrialState.WAITING) == 0, states
    assert sum(s in FINISHED for s in states) == budget, states
    assert len({t.number for t in all_trials}) == len(all_trials)
    return all_trials
