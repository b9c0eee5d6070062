"""The running trial's heartbeat, beaten from its own thread, and what the worker knows of the storage's reach.

A heartbeat written from the worker's main loop lapses whenever that loop is slow (a busy CPU,
a storage retry, a slow message from the child), and a live trial then looks dead: the fault
Optuna users report as live trials failed by the heartbeat. Like Optuna's own
`storages/_heartbeat.py`, the beat here is its own thread with its own database session (Optuna's
RDB storage keeps one session per thread), so only a frozen or dead worker stops beating.

Heartbeats are stamped with the database's clock (Optuna's `record_heartbeat` writes the
server's `now()`), so hosts with skewed clocks do not make each other look stale.
"""

from __future__ import annotations

import logging
import threading
import time

import optuna

from sweeper.storage import retry

log = logging.getLogger("sweeper.heartbeat")


class Reach:
    """When this worker last failed to reach the storage, from any thread.

    After an outage every live worker's heartbeat is old until its next beat; reaping only once
    the storage has answered this worker for a whole stale limit gives them all time to beat again.
    A beat that took over twice the beat interval counts as a failure too: a storage (or a
    pooler's queue) that slow for this worker is as slow for the others, whose beats then lapse
    without their workers being dead (512 workers through a pool of 10 on 2 cores showed it).
    """

    def __init__(self) -> None:
        self._last_failure = time.monotonic()  # a new worker has not yet watched anyone beat

    def failed(self) -> None:
        self._last_failure = time.monotonic()

    def steady_for(self, seconds: float) -> bool:
        return time.monotonic() - self._last_failure >= seconds


class Heartbeat:
    """Beats every `interval` seconds for the trial it is told to hold, until stopped."""

    def __init__(self, rdb: optuna.storages.RDBStorage, interval: float, reach: Reach) -> None:
        self._storage = rdb
        self._interval = interval
        self._reach = reach
        self._beating_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hold(self, trial_id: int) -> None:
        """Beat for this trial from now on (the claim has already written its first beat)."""
        self._beating_id = trial_id

    def release(self) -> None:
        """Stop beating: the trial is about to end (a late beat for an ended trial is harmless)."""
        self._beating_id = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            trial_id = self._beating_id
            if trial_id is None:
                continue
            asked = time.monotonic()
            try:
                self._storage.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any storage trouble
                self._reach.failed()
                log.debug(
                    "heartbeat for trial id %d not written: %s",
                    trial_id,
                    retry.describe(exc),
                )
                continue
            took = time.monotonic() - asked
            if took > 2 * self._interval:  # a storage this slow for us delays everyone's beats: reap no one yet
                self._reach.failed()
                log.debug("heartbeat for trial id %d took %.1fs, over twice its interval", trial_id, took)
