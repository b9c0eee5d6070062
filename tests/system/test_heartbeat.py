"""The heartbeat thread: a live trial stays alive however busy the worker's main thread is."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import storage
from sweeper.fleet.heartbeat import Heartbeat, Reach
from sweeper.storage import optuna_internals, urls
from tests.fleet import wait_for


def _spin(seconds: float) -> None:
    """Keep the main thread computing (and mostly holding the GIL), as a busy worker would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(10_000))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_held_trial_outlives_a_busy_main_thread_and_a_released_one_goes_stale(
    backend, tmp_path: Path, request
) -> None:
    url = f"sqlite:///{tmp_path / 'beats.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = storage.connect(urls.resolve_url(url), heartbeat_seconds=1, stale_after_seconds=4, max_retries=0)
    try:
        study = optuna.create_study(storage=store.storage, study_name="beats")
        alive, released, never = study.ask(), study.ask(), study.ask()
        for trial in (alive, released, never):
            store.storage.record_heartbeat(optuna_internals.trial_id(trial))
        beats = [Heartbeat(store.storage, 1, Reach()) for _ in range(2)]
        for beat, trial in zip(beats, (alive, released), strict=False):
            beat.start()
            beat.hold(optuna_internals.trial_id(trial))
        beats[1].release()
        _spin(5.5)  # the released trial's last beat is at least 5.5 s old, past the 4 s limit
        optuna.storages.fail_stale_trials(study)
        for beat in beats:
            beat.stop()
        states = {t.number: t.state for t in study.get_trials()}
        assert states == {
            alive.number: TrialState.RUNNING,
            released.number: TrialState.FAIL,
            never.number: TrialState.FAIL,
        }
    finally:
        store.close()


def test_reach_is_steady_only_a_whole_interval_after_the_last_failure() -> None:
    started = time.monotonic()
    reach = Reach()
    assert not reach.steady_for(60), "a new worker has watched nobody beat yet"
    wait_for(lambda: reach.steady_for(0.2), timeout=30, what="a steady reach")
    assert time.monotonic() - started >= 0.2
    reach.failed()
    assert not reach.steady_for(60)  # intervals long enough that a busy machine cannot pass them unseen
