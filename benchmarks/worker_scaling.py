"""Benchmark 3: trials per minute with 1, 2, 4 and 8 workers sharing one PostgreSQL study.

Each worker is a real process running the worker's own loop (claims under the study lock,
heartbeats, reports, pruning checks, tell), with a training child that sleeps through each
"epoch" instead of training, so the 2 cores are not what limits the fleet. Workers connect,
then start together, so the rate is the running fleet's, not Python's start-up. Worker counts run
up then down (1 2 4 8 8 4 2 1) and are averaged, so drift hits every count alike.

    python -m benchmarks.worker_scaling [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from benchmarks.common import ROOT, median, scratch_postgres, search_mechanics, write
from sweeper import storage, studyfile
from sweeper.fleet import open_study
from sweeper.fleet.worker import Worker
from sweeper.storage import urls
from sweeper.studyfile import StudySpec
from sweeper.training.protocol import ChildMessage, Done, Epoch

COUNTS = (1, 2, 4, 8)


class SleepingChild:
    """Stands in for the training process: each epoch takes `epoch_seconds` of sleep."""

    def __init__(self, epoch_seconds: float) -> None:
        self.epoch_seconds = epoch_seconds
        self._epochs = self._epoch = 0
        self._due = 0.0
        self._finished = False

    def start(self, job: Any) -> None:
        self._epochs, self._epoch, self._finished = job.epochs, 0, False
        self._due = time.monotonic() + self.epoch_seconds

    def receive(self, timeout: float) -> ChildMessage | None:
        if self._finished:
            return Done({"train_seconds": self._epoch * self.epoch_seconds, "images_per_second": 0.0})
        wait = self._due - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(wait, 0.0))
        self._epoch += 1
        value = 0.1 + 0.05 * self._epoch
        metrics = {"acc": value, "loss": 1.0, "val_acc": value, "val_loss": 1.0}
        return Epoch(self._epoch, self.epoch_seconds, metrics)

    def reply(self, keep_going: bool) -> None:
        if keep_going and self._epoch < self._epochs:
            self._due = time.monotonic() + self.epoch_seconds
        else:
            self._finished = True

    def kill(self) -> None:
        self._finished = True

    def close(self) -> None:
        pass


def _run_worker(url: str, spec_json: dict, epoch_seconds: float, start: Any) -> None:
    import benchmarks.common  # noqa: F401  (quiet Optuna in this spawned process too)

    spec = StudySpec.model_validate(spec_json)
    fleet = spec.fleet
    store = storage.connect(
        url, heartbeat_seconds=fleet.heartbeat_seconds, stale_after_seconds=fleet.stale_after_seconds
    )
    try:
        worker = Worker(spec, store, open_study(store, spec), Path("."), child=SleepingChild(epoch_seconds))
        start.wait()  # all workers connected: time the fleet, not Python's start-up on 2 cores
        worker.run()
    finally:
        store.close()


def _rate(url: str, spec: StudySpec, workers: int, epoch_seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_run_worker, args=(url, spec.model_dump(mode="json"), epoch_seconds, start))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    store = storage.connect(url)
    import optuna

    trials = optuna.load_study(study_name=spec.name, storage=store.storage).get_trials()
    store.close()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    return {"workers": workers, "finished": len(finished), "budget": spec.study.budget, "trials": len(trials),
            "seconds": span, "trials_per_minute": 60 * len(finished) / span}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one pass up to 4 workers, fewer trials per worker")
    parser.add_argument("--epoch-seconds", type=float, default=0.2, help="sleep per epoch (real epochs take seconds)")
    parser.add_argument("--trials-per-worker", type=int)
    args = parser.parse_args()
    per_worker, epochs, epoch_seconds = (4, 5, args.epoch_seconds) if args.quick else (8, 10, args.epoch_seconds)
    per_worker = args.trials_per_worker or per_worker
    order = COUNTS[:-1] if args.quick else COUNTS + COUNTS[::-1]
    base = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    runs: list[dict[str, Any]] = []
    for index, workers in enumerate(order):
        spec = search_mechanics(
            base,
            study=base.study.model_copy(update={"name": f"scaling-{index}-{workers}", "budget": workers * per_worker}),
            training=base.training.model_copy(update={"epochs": epochs}),
            fleet=base.fleet.model_copy(update={"poll_seconds": 0.2}),
        )  # fmt: skip
        with scratch_postgres() as url, tempfile.TemporaryDirectory():
            runs.append(_rate(urls.resolve_url(url), spec, workers, epoch_seconds))
        print(runs[-1], flush=True)
    one = median([r["trials_per_minute"] for r in runs if r["workers"] == 1])
    rows = []
    for workers in sorted(set(order)):
        rate = median([r["trials_per_minute"] for r in runs if r["workers"] == workers])
        exact = all(r["finished"] == r["budget"] for r in runs if r["workers"] == workers)
        rows.append(
            {
                "workers": workers,
                "trials/min": rate,
                "vs 1 worker": rate / one,
                "efficiency": rate / (one * workers),
                "exact budget": exact,
            }
        )
    summary = {
        "epochs_per_trial": epochs, "epoch_seconds": epoch_seconds, "trials_per_worker": per_worker,
        "most_workers": rows[-1]["workers"], "efficiency_at_most": rows[-1]["efficiency"], "exact_budget_everywhere": all(r["exact budget"] for r in rows),
        "goal": "trials/min at 8 workers >= 0.9 x 8 x the 1-worker rate, and exactly the budget finished",
    }  # fmt: skip
    write("worker_scaling", "quick" if args.quick else f"full-{epoch_seconds:g}s-epochs", rows, summary)


if __name__ == "__main__":
    main()
