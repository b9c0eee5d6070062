"""Benchmark 2: orchestration time per trial as a study grows, on PostgreSQL and the SQLite default.

Each trial goes through the worker's own code: claim (lock, reap, count, ask with the study's TPE
sampler), 30 epochs of report + pruning check with the study's Hyperband pruner, then the
attributes and tell. The objective is a no-op: a made-up learning curve from the parameters.
For reference, a third side runs the loop a hand-written Optuna script would (ask, suggest,
`trial.report` + `trial.should_prune` every epoch, tell) with the same sampler and pruner on
PostgreSQL. The sides are interleaved trial by trial, so machine noise hits all alike.

    python -m benchmarks.storage_cost [--quick]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks.common import ROOT, median, scratch_postgres, search_mechanics, write
from sweeper import fleet, storage, studyfile
from sweeper.fleet import search
from sweeper.fleet.heartbeat import Reach
from sweeper.fleet.recording import Recorder
from sweeper.fleet.trial_runner import should_stop
from sweeper.storage import Store, urls
from sweeper.storage.records import TrialRecord
from sweeper.studyfile import StudySpec

PLAIN = "plain Optuna script, postgresql"


def _curve(params: dict, epoch: int) -> float:
    """A plausible val_acc curve: better near lr 1e-3, saturating with epochs."""
    quality = math.exp(-((math.log10(params["learning_rate"]) + 3) ** 2)) * (0.8 - 0.3 * params["dropout"])
    return 0.1 + quality * (1 - math.exp(-epoch / 8))


class WorkerPath:
    """The worker's own storage path without the training: claim, report and prune, record."""

    def __init__(self, url: str, spec: StudySpec) -> None:
        fleet_spec = spec.fleet
        self.spec, self.name = spec, "bench"
        self.store: Store = storage.connect(
            url, heartbeat_seconds=fleet_spec.heartbeat_seconds, stale_after_seconds=fleet_spec.stale_after_seconds
        )
        self.study = fleet.open_study(self.store, spec)
        self.reaper = fleet.Reaper(self.store, self.study, spec, Reach(), self.name)
        self.recorder = Recorder(self.store, self.study, fleet_spec.max_retries, lambda action, _what: action())

    def one_trial(self, epochs: int) -> float:
        started = time.perf_counter()
        if self.reaper.due():  # the worker's reaper thread, here in line: a lone worker looks every half stale limit
            self.reaper.reap()
        trial = fleet.claim(self.store, self.study, self.spec, self.name).trial
        fleet.start(trial, self.study, self.spec, self.name)
        history: dict[str, list[float]] = {"val_acc": [], "acc": []}
        state = TrialState.COMPLETE
        for epoch in range(1, epochs + 1):
            value = _curve(trial.params, epoch)
            history["val_acc"].append(value)
            history["acc"].append(value + 0.05)
            if should_stop(trial, self.spec, value, epoch):
                state = TrialState.PRUNED
                break
        self.recorder.finish(trial, state, TrialRecord(worker=self.name), history, started)
        return time.perf_counter() - started


def _plain_trial(study: optuna.Study, spec: StudySpec, epochs: int) -> float:
    """What a hand-written Optuna script does with the same sampler and pruner."""
    started = time.perf_counter()
    trial = study.ask()
    params = search.suggest(trial, spec)
    for epoch in range(1, epochs + 1):
        trial.report(_curve(params, epoch), epoch)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            break
    else:
        study.tell(trial, _curve(params, epochs))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="checkpoints at 5 and 20 trials instead of 100 and 1000 (proves the script runs)",
    )
    args = parser.parse_args()
    small, large = (5, 20) if args.quick else (100, 1000)
    window = 4 if args.quick else 20
    spec = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    spec = search_mechanics(spec, study=spec.study.model_copy(update={"budget": large + window}))
    epochs = spec.training.epochs

    with scratch_postgres() as pg_url, scratch_postgres() as plain_url, tempfile.TemporaryDirectory() as tmp:
        sides = {"postgresql": urls.resolve_url(pg_url), "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        workers = {name: WorkerPath(url, spec) for name, url in sides.items()}
        plain = optuna.create_study(
            storage=urls.resolve_url(plain_url), study_name=spec.name, direction="maximize",
            sampler=search.make_sampler(spec), pruner=search.make_pruner(spec),
        )  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in [*sides, PLAIN]}
        for _ in range(large + window):
            for name, worker in workers.items():  # interleaved: PostgreSQL, SQLite, plain Optuna, PostgreSQL, ...
                times[name].append(worker.one_trial(epochs))
            times[PLAIN].append(_plain_trial(plain, spec, epochs))
        for worker in workers.values():
            worker.store.close()
        del plain  # its engine closes with it

    rows, summary = [], {"epochs_per_trial": epochs, "window": window}
    for name, series in times.items():
        at_small = median(series[small - window // 2 : small + window // 2]) * 1000
        at_large = median(series[large : large + window]) * 1000
        rows.append(
            {
                "storage": name,
                f"ms/trial at {small}": at_small,
                f"ms/trial at {large}": at_large,
                "growth": at_large / at_small,
            }
        )
        summary[name] = {"ms_per_trial_small": at_small, "ms_per_trial_large": at_large, "growth": at_large / at_small}
    summary["worker_vs_plain_optuna_postgresql"] = (
        summary["postgresql"]["ms_per_trial_large"] / summary[PLAIN]["ms_per_trial_large"]
    )
    summary["compare"] = "sides within this run; the fleet's storage goal is connections and claim latency (issue 16)"
    write("storage_cost", "quick" if args.quick else "full", rows, summary)


if __name__ == "__main__":
    main()
