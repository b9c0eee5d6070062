"""The worker's handle on its training process (`trainer`): start, feed, recycle, kill.

A child that dies (segfault, OOM kill, CUDA error) takes nothing with it but its own trial. The
messages are `protocol`'s; this module does not import Keras, so the worker never loads
a Keras backend.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.training.child_output import StderrRelay, become_stderr
from sweeper.training.protocol import ChildLost, ChildMessage, Done, Job, Reply, Train

log = logging.getLogger("sweeper.trainer_process")
_SPAWN = multiprocessing.get_context("spawn")  # a fork would inherit the worker's DB connections


@dataclass
class TrainingProcess:
    """The worker's side: starts, feeds, recycles and, when needed, kills the training child.

    A warm child saves the TensorFlow import and data mapping (seconds per trial on a CPU); it is
    replaced after `trials_per_child` trials, or sooner if its peak memory has grown by
    `child_growth_mb` since its first trial (a leak would otherwise build up across trials).
    """

    data_folder: Path
    trials_per_child: int
    child_growth_mb: float
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False
    """Pass the backend's start-up INFO lines through to the log (they are left out by default)."""
    _process: Any = None
    _relay: StderrRelay | None = None
    _conn: Any = None
    _trials_run: int = 0
    _first_peak_mb: float | None = None
    _peak_mb: float = 0.0

    @property
    def pid(self) -> int | None:
        """The training child's process id, while one is running."""
        return self._process.pid if self._process is not None else None

    def start(self, job: Job) -> None:
        if self._process is not None and self._spent():
            self.close()
        if self._process is None or not self._process.is_alive():
            self._spawn()
        self._conn.send(Train(job))
        self._trials_run += 1

    def receive(self, timeout: float) -> ChildMessage | None:
        """The child's next message, `ChildLost` if it died, or None if nothing came in time."""
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel], timeout)
        if not ready:
            return None
        if self._conn in ready:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                pass
            else:
                if isinstance(message, Done):
                    self._peak_mb = message.summary.get("child_peak_mb", 0.0)
                    self._first_peak_mb = self._first_peak_mb or self._peak_mb
                return message
        return ChildLost(self._death_reason())

    def _spent(self) -> bool:
        if self._trials_run >= self.trials_per_child:
            return True
        grown = self._peak_mb - (self._first_peak_mb or self._peak_mb)
        if grown >= self.child_growth_mb:
            log.info("training process grew by %.0f MB over %d trials; starting a fresh one", grown, self._trials_run)
            return True
        return False

    def reply(self, keep_going: bool) -> None:
        self._conn.send(Reply.CONTINUE if keep_going else Reply.STOP)

    def kill(self) -> None:
        """Stop the child now: its trial is being abandoned."""
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._forget()

    def close(self, timeout: float = 10.0) -> None:
        """Let the child exit cleanly between trials; kill it if it does not."""
        if self._process is None:
            return
        try:
            self._conn.send(Reply.EXIT)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._forget()

    def _spawn(self) -> None:
        self._forget()
        parent_end, child_end = _SPAWN.Pipe()
        self._relay = StderrRelay(self.verbose)
        self._process = _SPAWN.Process(
            target=_child_main,
            args=(child_end, str(self.data_folder), self.env, self._relay.write_end, os.getpid()),
            name="sweeper-training",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._relay.close_write_end()
        self._conn = parent_end
        self._trials_run = 0
        self._first_peak_mb, self._peak_mb = None, 0.0

    def _death_reason(self) -> str:
        self._process.join(5)
        code = self._process.exitcode
        self._forget()
        if code is None:
            return "training process stopped answering"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            return f"training process killed by {name}{hint}"
        return f"training process exited with code {code}"

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._relay is not None:
            self._relay.join()  # the child is gone: its last lines are out before the worker says why
        self._process = None
        self._conn = None
        self._relay = None


_PR_SET_PDEATHSIG = 1


def _die_with(worker_pid: int) -> None:
    """Have the kernel kill this child when its worker dies (Linux's parent-death signal).

    A worker killed with SIGKILL cannot stop its child, which would train on (holding a GPU's
    memory) until it next writes to the closed pipe: an epoch, or never while a builder runs.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker_pid:  # the worker died before the signal was armed
        os._exit(1)


def _child_main(
    conn: multiprocessing.connection.Connection,
    data_folder: str,
    env: dict[str, str],
    stderr: multiprocessing.connection.Connection,
    worker_pid: int,
) -> None:
    """Child entry point: set the environment and stderr before TensorFlow loads, then serve jobs."""
    _die_with(worker_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the worker decides
    become_stderr(stderr)
    os.environ.update(env)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sweeper.training import trainer

    trainer.serve(conn, Path(data_folder))
