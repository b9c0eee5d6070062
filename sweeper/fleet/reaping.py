"""Reaping: the trials of workers that stopped beating are failed and queued again, once per
half stale limit for the whole fleet, from a thread of its own.

Every worker can reap, so a study never waits on one machine; but one look per half stale limit
is enough for the fleet, and with each of hundreds of workers looking on its own schedule the
looks (each under the study lock) outnumbered the claims. So the last look is recorded in the
study (`ReapRecord`: who, when, and the stale heartbeats it saw); a worker whose own timer comes
due reads that record without the lock and looks only when it is half a stale limit old. It then
says so in the study (`ReapTurn`) before queueing for the lock, so the workers coming due while
it waits leave the look to it instead of queueing too. A reaper that dies is replaced by
whichever worker comes due next. Looks run in the reaper's own thread, so
a reap waiting for the lock never holds up the worker's loop, nor the training child waiting for
its answer after an epoch.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time

import optuna
from optuna.trial import TrialState

from sweeper.fleet.heartbeat import Reach
from sweeper.storage import Store, optuna_internals, records, retry
from sweeper.storage.records import ReapRecord, ReapTurn, StudyRecord, TrialRecord
from sweeper.studyfile import StudySpec

log = logging.getLogger("sweeper.fleet")

LAG_MARGIN = 2.0
"""A silent trial is reaped only once its silence is over twice the lag live beats were lately seen to have."""


class Reaper:
    """Fails (and queues again) the trials of workers that stopped beating.

    A slow storage is not a dead worker: a held SQLite write lock, a busy PostgreSQL or an outage
    delays every live worker's beat. So a trial is reaped only when two looks, a whole stale limit
    apart, find the same heartbeat, older than the stale limit, and the storage answered the
    reaping worker all the while, promptly (a beat of its own held back past twice its interval
    counts as no answer); a beat landing between the looks clears it. A worker looks only
    once the storage has answered it for a whole stale limit, and a look cut short by an outage is
    asked for again: its retry never acts on what came before the outage. Looks follow one another
    every half stale limit or a little more (whichever worker makes them), so a dead worker's trial
    is reaped about two to two and a half stale limits after its last beat.

    A fleet whose live beats lag (a pooler's queue, saturated CPUs) shows it: the reaper reaps a
    trial only once its silence is over `LAG_MARGIN` times the lag live workers' beats were lately
    seen to have (`fleet_lag`), so a dead worker's trial then waits longer, and no live one is reaped.
    """

    def __init__(self, store: Store, study: optuna.Study, spec: StudySpec, reach: Reach, name: str) -> None:
        self._store, self._study, self._spec, self._reach, self._name = store, study, spec, reach, name
        self._period = spec.fleet.stale_after_seconds / 2
        self._next = time.monotonic() + random.uniform(0, self._period / 4)  # nosec B311 # workers started together do not ask together
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-reaper", daemon=True)

    def start(self) -> None:
        """Look whenever due from now on, in the reaper's own thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop looking. A look still waiting for the lock is not waited for: the thread is a daemon,
        and a look cut short by the exit is one cut short by an outage; the next, anyone's, looks again."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def due(self) -> bool:
        """This worker's turn to ask whether the fleet's look is due (no database read)."""
        return time.monotonic() >= self._next and self._reach.steady_for(self._spec.fleet.stale_after_seconds)

    def reap(self) -> None:
        """Look, unless another worker did less than half a stale limit ago (or is about to), and
        reap the trials seen stale twice."""
        now = optuna_internals.database_now(self._store)
        if self._left_to_others(StudyRecord.from_study(self._study), now, turns_count=True):  # no lock: most end here
            return
        StudyRecord(self._spec.name, reap_turn=ReapTurn(self._name, now)).write(self._study, "reap_turn")
        with self._store.lock(self._spec.name, "reaping"):
            record, now = StudyRecord.from_study(self._study), optuna_internals.database_now(self._store)
            # A retry after an outage waits for the live to beat; a look made while this one waited is enough.
            if self.due() and not self._left_to_others(record, now, turns_count=False):
                self._look(record, now)

    def _left_to_others(self, record: StudyRecord, now: datetime.datetime, *, turns_count: bool) -> bool:
        """Whether the fleet's last look is younger than half a stale limit, or (if `turns_count`)
        another worker said less than a quarter stale limit ago that it is about to look; if so,
        come back when it is due again, a little later at random so that workers do not all ask at once."""
        last, turn = record.last_reap, record.reap_turn
        age = (now - last.at).total_seconds() if last else float("inf")
        if age < self._period:
            wait = self._period - age
        elif turns_count and turn and turn.by != self._name and (now - turn.at).total_seconds() < self._period / 2:
            wait = self._period / 2 - (now - turn.at).total_seconds()  # if it died, the turn lapses
        else:
            return False
        self._next = time.monotonic() + wait + random.uniform(0, self._period / 4)  # nosec B311
        return True

    def _look(self, record: StudyRecord, now: datetime.datetime) -> None:
        fleet = self._spec.fleet
        stale = fleet.stale_after_seconds
        seen_before = record.last_reap.stale if record.last_reap else {}
        beats = optuna_internals.running_heartbeats(self._store, self._spec.name)
        lag = fleet_lag(record.last_reap, beats, now, stale)
        limit = max(float(stale), LAG_MARGIN * lag)
        if limit > stale:
            log.info(
                "%s: live workers' beats lag up to %.0fs: a trial is reaped only after %.0fs of silence",
                self._name,
                lag,
                limit,
            )
        seen: dict[int, tuple[datetime.datetime, datetime.datetime]] = {}
        late: dict[int, datetime.datetime] = {}
        for trial_id, beat in beats.items():
            silent = (now - beat).total_seconds()
            if silent > fleet.heartbeat_seconds:
                late[trial_id] = beat
            if silent <= stale:
                continue
            first = seen_before.get(trial_id)
            watched = (now - first[1]).total_seconds() if first else 0.0
            if first is None or first[0] != beat or not self._reach.steady_for(watched):
                seen[trial_id] = (beat, now)
            elif watched >= stale and silent > limit:
                self._fail(trial_id, silent, lag)
            else:
                seen[trial_id] = first
        StudyRecord(self._spec.name, last_reap=ReapRecord(self._name, now, seen, late, lag)).write(
            self._study, "last_reap"
        )
        self._next = time.monotonic() + self._period

    def _fail(self, trial_id: int, silent_for: float, lag: float) -> None:
        rdb = self._store.storage
        reason = f"reaped by {self._name}: no heartbeat for {silent_for:.0f}s (stale after {self._spec.fleet.stale_after_seconds}s"
        reason += f"; live beats lagged up to {lag:.0f}s)" if lag else ")"
        try:
            TrialRecord(fail_reason=reason).write_by_id(rdb, trial_id)
            if not rdb.set_trial_state_values(trial_id, state=TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # its worker finished it after all
        frozen = rdb.get_trial(trial_id)
        log.warning("%s: trial %d failed and queued again: %s", self._name, frozen.number, reason)
        queue_retry = rdb.get_heartbeat_stale_trial_callback()
        if queue_retry is not None:
            queue_retry(self._study, records.for_retry(frozen))

    def turn(self) -> None:
        """One turn of the reaper's thread: look if due. Storage trouble (an outage, SQLite's write
        lock held too long) is logged, counts as the storage not answering, and the next turn retries."""
        if not self.due():
            return
        try:
            self.reap()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive any storage trouble
            self._reach.failed()
            level = logging.DEBUG if retry.is_transient(exc) else logging.WARNING
            log.log(level, "%s: reaping stale trials failed, will look again: %s", self._name, retry.describe(exc))

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self._period / 4)):
            self.turn()


def fleet_lag(
    last: ReapRecord | None, beats: dict[int, datetime.datetime], now: datetime.datetime, stale_after: float
) -> float:
    """How long a live worker's beat can lag now, in seconds, as the fleet has shown it.

    A beat that was late at the last look and has been followed by another since belonged to a
    live worker: the age it had then is a lag live beats can have (a pooler's queue behind
    hundreds of workers, CPUs saturated by their samplers: 512 workers on 2 cores held live beats
    back 85-207 s, and a reaper holding no trial has no beat of its own to notice it by). A dead
    worker never beats again, so it never adds to the lag. A lag no look proves again halves every
    stale limit or every lag, whichever is longer (a beat held back that long proves it no sooner),
    so a fleet that calms down reaps at the stale limit again.
    """
    if last is None:
        return 0.0
    proven = max(
        ((last.at - old).total_seconds() for trial_id, old in last.late.items() if beats.get(trial_id, old) > old),
        default=0.0,
    )
    remembered = last.lag * 0.5 ** ((now - last.at).total_seconds() / max(stale_after, last.lag))
    return max(proven, remembered)
