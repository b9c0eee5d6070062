"""Where benchmark 2's time goes: the worker's path per trial, phase by phase, with SQL statement counts.

Grows a study to --study-size trials on a scratch PostgreSQL database through the worker's
own path (as `storage_cost` does), then runs --trials more with each phase timed (exclusive of
the phases nested in it) and each SQL statement counted in the phase that issued it. A
diagnostic for choosing what to cut next, not a goal: the timers add a little to every phase.

    python -m benchmarks.storage_phases [--quick] [--study-size N] [--trials K]
"""

from __future__ import annotations

import argparse
import collections
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy

from benchmarks.common import ROOT, median, scratch_postgres, search_mechanics, write
from benchmarks.storage_cost import WorkerPath
from sweeper import fleet, studyfile

# (owner, attribute, phase): the worker's path as it calls them.
from sweeper.fleet import _shared_study, search
from sweeper.storage import urls

PHASES = (
    (fleet.Reaper, "reap", "reap stale trials"),
    (_shared_study, "progress", "count the budget"),
    (_shared_study, "_next_trial", "take a trial (what study.ask() did)"),
    (search, "suggest", "sample (TPE)"),
    (optuna.Trial, "report", "report epochs"),
    (optuna.Trial, "should_prune", "pruning checks"),
    (optuna.Trial, "set_user_attr", "result attributes"),
    (optuna.Study, "tell", "tell (writes the result)"),
)


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.statements: collections.Counter[str] = collections.Counter()
        self._stack = ["other"]
        self._nested = [0.0]

    def count_statement(self, *_: Any) -> None:
        self.statements[self._stack[-1]] += 1

    def wrap(self, function: Callable, phase: str) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(phase)
            self._nested.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.seconds[phase] += elapsed - self._nested.pop()
                self._stack.pop()
                self._nested[-1] += elapsed

        return timed


@contextmanager
def timing(clock: PhaseClock) -> Iterator[None]:
    """Every engine's statements are counted: under the study lock they run on the lock's connection."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PHASES]
    for (owner, name, original), (_, _, phase) in zip(originals, PHASES, strict=False):
        setattr(owner, name, clock.wrap(original, phase))
    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", clock.count_statement)
    try:
        yield
    finally:
        sqlalchemy.event.remove(sqlalchemy.Engine, "before_cursor_execute", clock.count_statement)
        for owner, name, original in originals:
            setattr(owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 30-trial study, 5 timed trials")
    parser.add_argument("--study-size", type=int, help="trials in the study before timing (default 1000)")
    parser.add_argument("--trials", type=int, help="trials timed (default 40)")
    args = parser.parse_args()
    size = args.study_size or (30 if args.quick else 1000)
    trials = args.trials or (5 if args.quick else 40)
    spec = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    spec = search_mechanics(spec, study=spec.study.model_copy(update={"budget": size + trials}))

    with scratch_postgres() as url:
        worker = WorkerPath(urls.resolve_url(url), spec)
        for _ in range(size):
            worker.one_trial(spec.training.epochs)
        clock, totals = PhaseClock(), []
        with timing(clock):
            for _ in range(trials):
                totals.append(worker.one_trial(spec.training.epochs))
        worker.store.close()

    total = sum(totals)
    clock.seconds["other"] = total - sum(s for phase, s in clock.seconds.items() if phase != "other")
    rows = [{"phase": phase, "ms/trial": clock.seconds[phase] / trials * 1000, "statements/trial": clock.statements[phase] / trials}
            for _, _, phase in (*PHASES, (None, None, "other"))]  # fmt: skip
    summary = {
        "study_size": size,
        "trials_timed": trials,
        "median_ms_per_trial": median(totals) * 1000,
        "mean_ms_per_trial": total / trials * 1000,
        "statements_per_trial": sum(clock.statements.values()) / trials,
    }
    write("storage_phases", "quick" if args.quick else "full", rows, summary)


if __name__ == "__main__":
    main()
