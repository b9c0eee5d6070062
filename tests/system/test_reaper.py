"""The reaper against a slow storage and an outage: a live trial whose beat is late is never reaped.

Each test holds a real trial with a real heartbeat thread, makes its beats late the way a busy
storage does (SQLite's write lock held by another connection, the heartbeat row locked in
PostgreSQL, the server stopped), and has a second worker's reaper look all along. Only a trial
whose worker is really gone may be reaped, with its reason.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweeper import fleet, storage, studyfile
from sweeper.fleet.heartbeat import Heartbeat, Reach
from sweeper.storage import Store, retry, urls
from sweeper.storage.records import StudyRecord
from tests.conftest import study_file

STALE = 4  # seconds; beats every second, as the smoke study


def _connect(url: str, pool_size: int = 3) -> Store:
    """A worker's storage as the smoke study opens it: a beat a second, stale after STALE."""
    return storage.connect(
        urls.resolve_url(url), heartbeat_seconds=1, stale_after_seconds=STALE, max_retries=1, pool_size=pool_size
    )


def _open(url: str, tmp_path: Path) -> tuple[Store, optuna.Study, studyfile.StudySpec]:
    spec = studyfile.load(study_file(tmp_path, study={"name": "reaped", "budget": 4}, baselines=[]))
    store = _connect(url)
    return store, fleet.open_study(store, spec), spec


def _claimed_and_beating(store: Store, study: optuna.Study, spec: studyfile.StudySpec) -> tuple[int, Heartbeat]:
    """A trial claimed as a worker claims it, with its heartbeat thread beating every second."""
    claim = fleet.claim(store, study, spec, "victim")
    assert claim.trial is not None
    beat = Heartbeat(store.storage, 1, Reach())
    beat.start()
    beat.hold(claim.trial._trial_id)
    return claim.trial._trial_id, beat


@dataclass
class _Pair:
    """A victim worker holding a beating trial, and another worker whose reaper looks at it."""

    victim: Store
    other: Store
    reach: Reach
    reaper: fleet.Reaper
    trial_id: int


@contextlib.contextmanager
def _victim_and_other(url: str, tmp_path: Path) -> Iterator[_Pair]:
    victim, study, spec = _open(url, tmp_path)
    other = _connect(url)
    reach = Reach()
    trial_id, beat = _claimed_and_beating(victim, study, spec)
    try:
        yield _Pair(victim, other, reach, fleet.Reaper(other, study, spec, reach, "other"), trial_id)
    finally:
        beat.stop()
        victim.close()
        other.close()


def _assert_alive(pair: _Pair) -> None:
    trial = pair.victim.storage.get_trial(pair.trial_id)
    assert trial.state == TrialState.RUNNING, trial.user_attrs.get("fail_reason")


def _look_until(reaper: fleet.Reaper, seconds: float) -> None:
    """Reap as a worker's reaper thread does, whenever due, for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reaper.turn()
        time.sleep(0.1)


@contextlib.contextmanager
def _beats_held(url: str, trial_id: int) -> Iterator[None]:
    """Heartbeat writes wait: SQLite's write lock, or the trial's heartbeat row locked in PostgreSQL."""
    if urls.is_sqlite(url):
        connection = sqlite3.connect(sqlalchemy.engine.make_url(url).database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")  # readers still read; every writer waits
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    engine = sqlalchemy.create_engine(urls.resolve_url(url), poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as connection:
        locked = connection.execute(
            sqlalchemy.text("SELECT trial_id FROM trial_heartbeats WHERE trial_id = :id FOR UPDATE"), {"id": trial_id}
        ).all()
        assert locked, "the claim wrote the trial's first heartbeat"
        yield
        connection.rollback()
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_beat_delayed_past_the_stale_limit_by_a_slow_storage_is_not_a_dead_worker(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'slow.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with _victim_and_other(url, tmp_path) as pair:
        with _beats_held(url, pair.trial_id):
            _look_until(pair.reaper, 1.5 * STALE)  # the beat is older than the stale limit for seconds
        _look_until(pair.reaper, 2 * STALE)
        _assert_alive(pair)


def test_a_dead_workers_trial_is_reaped_with_its_reason_and_queued_again(tmp_path: Path) -> None:
    store, study, spec = _open(f"sqlite:///{tmp_path / 'dead.db'}", tmp_path)
    trial_id, beat = _claimed_and_beating(store, study, spec)
    beat.stop()  # the worker is gone: no beat after this one
    reaper = fleet.Reaper(store, study, spec, Reach(), "other")
    try:
        end = time.monotonic() + 6 * STALE
        while store.storage.get_trial(trial_id).state == TrialState.RUNNING and time.monotonic() < end:
            _look_until(reaper, 0.5)
        trial = store.storage.get_trial(trial_id)
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_reason"].startswith("reaped by other: no heartbeat for ")
        queued = study.get_trials(states=(TrialState.WAITING,))
        assert [t.params for t in queued] == [trial.params] and "fail_reason" not in queued[0].user_attrs
    finally:
        store.close()


def test_an_outage_that_begins_during_a_reap_reaps_no_live_trial(throwaway_pg, tmp_path: Path) -> None:
    url = throwaway_pg.url
    with _victim_and_other(url, tmp_path) as pair:
        while not pair.reaper.due():  # the reap is due, and starts ...
            time.sleep(0.1)
        throwaway_pg.stop("immediate")  # ... as the server goes away
        reaping = threading.Thread(
            target=retry.retrying,
            args=(pair.reaper.reap, "reaping stale trials"),
            kwargs={"url": pair.other.url, "on_transient": pair.reach.failed, "patience_seconds": 120},
        )
        reaping.start()
        time.sleep(STALE + 2)  # lets time pass: every live beat is now older than the stale limit
        throwaway_pg.start()
        with _beats_held(url, pair.trial_id):  # the victim's first beat after the return comes late
            reaping.join(120)
        assert not reaping.is_alive()
        _look_until(pair.reaper, 2 * STALE)
        _assert_alive(pair)


def test_a_fleet_of_reapers_looks_as_often_as_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each worker looking every half stale limit on its own meant, with hundreds of workers, more
    looks under the study lock than claims: four workers' reapers here look about as often as one."""
    with _victim_and_other(f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path) as pair:
        spec = studyfile.load(tmp_path / "reaped.toml")  # the study `_victim_and_other` opened
        study = fleet.open_study(pair.other, spec)
        reapers = [fleet.Reaper(pair.other, study, spec, Reach(), f"reaper-{n}") for n in range(4)]
        caplog.set_level(logging.DEBUG, logger="sweeper.storage")
        watched = 3 * STALE  # none looks for the first STALE seconds: the storage must answer it that long
        for reaper in reapers:  # each in its own thread, as in four workers: all come due together
            reaper.start()
        time.sleep(watched)
        for reaper in reapers:
            reaper.stop()
        # Each a turn under the lock. One reaper looks at most (12 - 4) / 2 + 1 = 5 times here, four on
        # their own up to 20; two that read the record at the same moment may both queue, so up to 10.
        looks = sum("reaping: waited" in message for message in caplog.messages)
        one_reaper = (watched - STALE) / (STALE / 2) + 1
        assert 1 <= looks <= 2 * one_reaper, f"{looks} turns under the lock in {watched}s by 4 workers"
        assert StudyRecord.from_study(study).last_reap.by.startswith("reaper-")  # who looked last is in the study
        _assert_alive(pair)


def test_a_trial_seen_stale_by_a_reaper_that_died_is_reaped_by_another(tmp_path: Path) -> None:
    """The looks are the fleet's, not a worker's: the second look may be another worker's."""
    store, study, spec = _open(f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path)
    trial_id, beat = _claimed_and_beating(store, study, spec)
    beat.stop()  # the victim is gone
    reapers = {name: fleet.Reaper(store, study, spec, Reach(), name) for name in ("first", "second")}
    try:
        end = time.monotonic() + 4 * STALE
        while time.monotonic() < end and trial_id not in getattr(StudyRecord.from_study(study).last_reap, "stale", {}):
            reapers["first"].turn()
            time.sleep(0.1)
        assert StudyRecord.from_study(study).last_reap.by == "first"  # it saw the trial stale, then died
        end = time.monotonic() + 4 * STALE
        while store.storage.get_trial(trial_id).state == TrialState.RUNNING and time.monotonic() < end:
            reapers["second"].turn()
            time.sleep(0.1)
        trial = store.storage.get_trial(trial_id)
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_reason"].startswith("reaped by second: ")
    finally:
        store.close()


def test_a_beat_that_waits_over_twice_its_interval_holds_the_reaping_back(pg_url: str, tmp_path: Path) -> None:
    """A storage (or a pooler's queue) slow enough to hold this worker's beat back holds everyone's
    back: 512 workers through a pool of 10 on 2 cores had live trials reaped. The worker whose beat
    waited counts it as the storage not answering, and looks again only a stale limit later."""
    store, study, spec = _open(pg_url, tmp_path)
    reach = Reach()
    trial = fleet.claim(store, study, spec, "slow").trial
    assert trial is not None
    beat = Heartbeat(store.storage, 1, reach)
    beat.start()
    beat.hold(trial._trial_id)
    try:
        time.sleep(STALE + 1)
        assert reach.steady_for(STALE), "quick beats: the storage answers"
        with _beats_held(pg_url, trial._trial_id):
            time.sleep(3)  # the next beat waits for the row, then lands
        time.sleep(1)
        assert not reach.steady_for(STALE)
    finally:
        beat.stop()
        store.close()


def test_a_fleet_whose_live_beats_lag_more_and_more_loses_no_live_trial_and_still_reaps_the_dead(
    pg_url: str, tmp_path: Path
) -> None:
    """512 workers on 2 cores held live beats back 85-207 s, and the reaper, holding no trial and
    so with no beat of its own to time, reaped them. Here six live workers' beats are held back
    longer and longer (5 s to over three stale limits, their rows locked the way a queue of
    writers locks them), as a fleet saturating its machine does, while a seventh worker is dead:
    the reaper goes by the lag the live beats show, reaps none of them, and still reaps the dead."""
    spec = studyfile.load(study_file(tmp_path, study={"name": "lagging", "budget": 10}, baselines=[]))
    victims = _connect(pg_url, pool_size=8)  # seven trials' heartbeat threads
    other = _connect(pg_url)
    study = fleet.open_study(victims, spec)
    live = [_claimed_and_beating(victims, study, spec) for _ in range(6)]
    dead, dead_beat = _claimed_and_beating(victims, study, spec)
    dead_beat.stop()
    stop = threading.Event()

    def lag_more_and_more(index: int, trial_id: int) -> None:
        """Three holds, each 3 s longer than the last; the six workers' holds overlap, in turn."""
        stop.wait(index)
        for hold in (5 + 0.5 * index, 8 + 0.5 * index, 11 + 0.5 * index):
            with _beats_held(pg_url, trial_id):
                if stop.wait(hold):
                    return
            stop.wait(1.5)  # a fresh beat lands

    holders = [threading.Thread(target=lag_more_and_more, args=(n, trial_id)) for n, (trial_id, _) in enumerate(live)]
    for holder in holders:
        holder.start()
    try:
        _look_until(fleet.Reaper(other, study, spec, Reach(), "other"), 45)
        for trial_id, _ in live:
            trial = victims.storage.get_trial(trial_id)
            assert trial.state == TrialState.RUNNING, trial.user_attrs.get("fail_reason")
        reaped = victims.storage.get_trial(dead)
        assert reaped.state == TrialState.FAIL
        assert "live beats lagged up to" in reaped.user_attrs["fail_reason"]
    finally:
        stop.set()
        for holder in holders:
            holder.join()
        for _, beat in live:
            beat.stop()
        victims.close()
        other.close()
