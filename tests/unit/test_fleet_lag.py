"""The fleet's beat lag, as the reaper reads it from two looks: only beats that proved alive count."""

from __future__ import annotations

import datetime

from sweeper.fleet.reaping import fleet_lag
from sweeper.storage.records import ReapRecord

T0 = datetime.datetime(2026, 12, 5, 12, 0, 0)
STALE = 40


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_a_late_beat_followed_by_another_proves_the_lag_and_a_dead_one_never_does() -> None:
    last = ReapRecord("w1", _at(100), late={1: _at(10), 2: _at(40), 3: _at(70)})
    beats = {1: _at(10), 2: _at(115), 3: _at(70)}  # 1 and 3 silent since, 2 beat again
    assert fleet_lag(last, beats, _at(120), STALE) == 60.0  # what trial 2's beat had lagged at the last look


def test_a_trial_no_longer_running_proves_nothing() -> None:
    last = ReapRecord("w1", _at(100), late={1: _at(10)})
    assert fleet_lag(last, {}, _at(120), STALE) == 0.0


def test_a_lag_no_look_proves_again_halves_every_stale_limit_or_lag_whichever_is_longer() -> None:
    short = ReapRecord("w1", _at(100), lag=20.0)
    assert fleet_lag(short, {}, _at(140), STALE) == 10.0  # halved after one stale limit (40 s > 20 s)
    long = ReapRecord("w1", _at(100), lag=200.0)
    assert fleet_lag(long, {}, _at(300), STALE) == 100.0  # halved after one lag (200 s > 40 s)
    assert fleet_lag(long, {1: _at(290)}, _at(300), STALE) == 100.0  # a beat not late at the last look proves nothing


def test_the_first_look_knows_no_lag() -> None:
    assert fleet_lag(None, {1: _at(0)}, _at(500), STALE) == 0.0
