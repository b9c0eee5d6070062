"""`sweeper sweep`: N local workers on one study, started together, signalled together, waited for.

The storage URL reaches the workers through the environment, never their command line, where
`ps` would show its password. On a terminal the workers also write their events as JSON lines
(`--events json`) and the sweep draws the live view from them; their log lines scroll above it.
Anywhere else (a file, a pipe, `docker compose logs`) their plain log lines pass straight through.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import optuna
from rich.console import Console
from rich.live import Live

from sweeper import storage
from sweeper.cli.live_view import LiveView, StudyStatus, study_status
from sweeper.fleet import events
from sweeper.storage import urls
from sweeper.studyfile import StudySpec

log = logging.getLogger("sweeper.sweep")
STATUS_SECONDS = 2.0
"""How often the live view reads the study's counts and best trial from the storage."""


def run_workers(
    workers: int, worker_args: list[str], url: str, live: StudySpec | None = None, env: dict[str, str] | None = None
) -> int:
    """Start `workers` processes of `sweeper worker WORKER_ARGS`; pass SIGTERM and Ctrl-C on; the worst exit code.

    With `live` (the study being swept), draw the live view on this process's terminal. `env` adds
    to the workers' environment.
    """
    env = {**os.environ, **(env or {}), "SWEEPER_STORAGE": url}
    command = [sys.executable, "-m", "sweeper", *worker_args]
    log.info("sweep: %d workers, storage %s", workers, urls.mask(url))
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if live else {}
    if live is not None:
        command += ["--events", "json", "--no-epoch-lines"]  # the view shows the epochs
    processes: list[subprocess.Popen] = []
    asked: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        asked.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    # In place before any worker starts: a stop arriving while they were being started ended this
    # process and left a started worker to run the whole study. Each worker starts with SIGTERM
    # blocked and unblocks it once its launcher's handler is in place, so a stop forwarded while
    # its interpreter starts waits for that handler instead of killing it.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        process = subprocess.Popen(command, env=env, preexec_fn=_block_sigterm, **pipes)  # nosec B603 # our interpreter, `sweeper worker`
        processes.append(process)
        for signum in asked:  # a stop that came while this one was being started
            processes[-1].send_signal(signum)
    if live is not None:
        _watch(processes, live, url)
    return worst_exit_code([process.wait() for process in processes])


def worst_exit_code(codes: list[int]) -> int:
    """The sweep's exit status: a worker killed by a signal (128 + its number, as a shell says it),
    else the highest. A plain maximum hid a killed worker's negative code behind another's 0."""
    killed = [code for code in codes if code < 0]
    return 128 - killed[0] if killed else max(codes)


def _block_sigterm() -> None:
    """In the worker, between fork and exec: one C call, no lock taken."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _watch(processes: list[subprocess.Popen], spec: StudySpec, url: str) -> None:
    """Draw the live view until every worker has exited."""
    console = Console(stderr=True, highlight=False)
    view = LiveView(spec.name, spec.study.budget, spec.training.epochs)
    readers = [threading.Thread(target=_read_events, args=(p.stdout, view), daemon=True) for p in processes]
    readers += [threading.Thread(target=_relay_lines, args=(p.stderr, console), daemon=True) for p in processes]
    for reader in readers:
        reader.start()
    study = _StudyReader(url, spec.name)
    try:
        with Live(view, console=console, refresh_per_second=2, redirect_stdout=False):
            next_read = 0.0
            while any(process.poll() is None for process in processes):
                if time.monotonic() >= next_read:
                    view.status = study.read() or view.status
                    next_read = time.monotonic() + STATUS_SECONDS
                time.sleep(0.25)
            for reader in readers:
                reader.join(timeout=2)
            view.status = study.read() or view.status
    finally:
        study.close()


def _read_events(stream: IO[bytes], view: LiveView) -> None:
    for raw in stream:
        event = events.parse(raw.decode(errors="replace"))
        if event is not None:
            view.handle(event)


def _relay_lines(stream: IO[bytes], console: Console) -> None:
    for raw in stream:
        console.print(raw.decode(errors="replace").rstrip("\n"), markup=False, emoji=False)


class _StudyReader:
    """Reads the study's status for the view; None while the study does not exist yet or the storage is away."""

    def __init__(self, url: str, name: str) -> None:
        self._url, self._name = url, name
        self._store: storage.Store | None = None
        self._study: optuna.Study | None = None

    def read(self) -> StudyStatus | None:
        try:
            if self._store is None:
                self._store = storage.connect(self._url, patience_seconds=0)
            if self._study is None:
                self._study = optuna.load_study(study_name=self._name, storage=self._store.storage)
            return study_status(self._study)
        except Exception:  # noqa: BLE001 - a view that cannot read now keeps showing what it last read
            return None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
