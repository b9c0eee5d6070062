"""Benchmark 6: many workers on one study, through PgBouncer (transaction pooling, a server pool
of 10) and straight to PostgreSQL, side by side; at a given trial length and length of history.

Each worker runs the real worker loop (claims under the study lock, heartbeats, the reaper's
thread, reports, tell) with a training child that sleeps through its epochs (10 per trial, the
trial `--trial-seconds` long) instead of loading TensorFlow. The workers are threads, 16 to a
process (or each its own forked process with `--threads-per-process 1`), each with its own
connections, as separate workers have. The study is the real cifar10-regularization file's
search, with `--history` finished trials of 30 epochs already in it. Measured per (workers, trial
length, history): the peak number of PostgreSQL server connections, claims per second, claim
latency (from a worker's previous trial's end, or the start signal, to its next trial's start)
p50/p99, how long each claim and each reap held the study lock (p50/p99, from the lock's debug
log), scaling efficiency against the ideal (every worker busy sleeping all the time), the exact
budget, the live trials reaped (no worker dies here, so any reaped trial was live), and the
errors. The ceiling is derived from the lock: a claim every mean hold, so
1000 / mean hold (ms) claims a second, keeps that times 210 workers busy at the real study's
210-s trials on a GPU. Sides alternate within each worker count. Runs with other counts, sides,
threads, lengths or histories write `pgbouncer_scale-partial.json`, leaving the full table alone.

Needs root (PgBouncer runs as the postgres user) and Debian's pgbouncer.

    python -m benchmarks.pgbouncer_scale [--quick] [--counts N ...] [--trial-seconds S ...] [--history H ...]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import multiprocessing
import os
import queue
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from benchmarks.common import ROOT, add_history, scratch_postgres, write
from benchmarks.worker_scaling import SleepingChild
from sweeper import storage, studyfile
from sweeper.fleet import open_study
from sweeper.fleet.worker import Worker
from sweeper.storage import retry, urls
from sweeper.storage.records import TrialRecord
from sweeper.studyfile import Confirm, StudySpec
from tests.pgbouncer import PgBouncer, own_database, server_connections

PASSWORD = "bench-pw"
POOL_SIZE = 10
THREADS_PER_PROCESS = 16
EPOCHS = 10
HISTORY_EPOCHS = 30
GPU_TRIAL_SECONDS = 210
"""The real study's 30-epoch trial on a GPU: what the derived ceiling is counted in."""


class LockHolds(logging.Handler):
    """How long each claim and each reap of this process held the study lock (`Store.lock`'s debug line)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.held: dict[str, list[float]] = {"claiming a trial": [], "reaping": []}

    def emit(self, record: logging.LogRecord) -> None:
        _study, purpose, _waited, held = record.args  # type: ignore[misc]
        if purpose in self.held:
            self.held[purpose].append(held)


def _worker_thread(url: str, spec: StudySpec, name: str, epoch_seconds: float, ready: Any, go: Any) -> None:
    try:
        fleet = spec.fleet
        store = storage.connect(
            url, heartbeat_seconds=fleet.heartbeat_seconds, stale_after_seconds=fleet.stale_after_seconds
        )
    except Exception as exc:  # noqa: BLE001 - reported as a result: where the direct side breaks
        ready.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
        return
    try:
        study = retry.retrying(
            lambda: open_study(store, spec), "opening the study", url=url
        )  # as `sweeper worker` does
        ready.put(("ready", name))
        go.wait()
        Worker(spec, store, study, Path("."), name=name, child=SleepingChild(epoch_seconds)).run()
    except Exception as exc:  # noqa: BLE001
        ready.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
    finally:
        store.close()


def _worker_process(
    url: str, spec_json: dict, first: int, count: int, epoch_seconds: float, direct: bool, ready: Any, go: Any
) -> None:
    import benchmarks.common  # noqa: F401  (quiet Optuna in this spawned process too)

    if direct:  # at 128 workers most are refused: fail, don't wait forever
        os.environ["SWEEPER_CONNECT_TIMEOUT"] = "20"
    spec = StudySpec.model_validate(spec_json)
    holds = LockHolds()
    lock_log = logging.getLogger("sweeper.storage")
    lock_log.setLevel(logging.DEBUG)
    lock_log.addFilter(lambda record: record.msg.startswith("study lock"))
    lock_log.addHandler(holds)
    lock_log.propagate = False
    threads = [
        threading.Thread(target=_worker_thread, args=(url, spec, f"w{first + i}", epoch_seconds, ready, go))
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ready.put(("holds", holds.held))


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(
    side: str, workers: int, spec: StudySpec, epoch_seconds: float, per_process: int, history: int
) -> dict[str, Any]:
    with scratch_postgres() as admin_url:
        database = sqlalchemy.engine.make_url(admin_url).database
        own_database(admin_url, "sweeper", PASSWORD)
        admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        pooler = PgBouncer(admin_url, "sweeper", PASSWORD, pool_size=POOL_SIZE) if side == "pgbouncer" else None
        if pooler:
            pooler.start()
            url = pooler.url.replace("@", f":{PASSWORD}@")
        else:
            url = (
                sqlalchemy.engine.make_url(admin_url).set(username="sweeper", password=PASSWORD).render_as_string(False)
            )
        url = urls.resolve_url(url)
        if history:
            setup = storage.connect(url)
            open_study(setup, spec)
            setup.close()
            add_history(url, spec, history, HISTORY_EPOCHS)
        # One worker per process is forked (128 fresh interpreters would not fit in memory here).
        context = multiprocessing.get_context("spawn" if per_process > 1 else "fork")
        ready, go = context.Queue(), context.Event()
        processes = []
        for first in range(0, workers, per_process):
            count = min(per_process, workers - first)
            process = context.Process(
                target=_worker_process,
                args=(url, spec.model_dump(mode="json"), first, count, epoch_seconds, side == "direct", ready, go),
            )
            process.start()
            processes.append(process)
        errors: list[str] = []
        holds: dict[str, list[float]] = {"claiming a trial": [], "reaping": []}
        started = 0
        while started + len(errors) < workers:
            try:
                kind, detail = ready.get(timeout=1)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    raise RuntimeError("every worker process ended before the start") from None
                continue
            if kind == "error":
                errors.append(detail)
            elif kind == "ready":
                started += 1
        peak = server_connections(admin, database)
        go_time = datetime.datetime.now()
        cpu_before = _cpu_times()
        go.set()
        while any(p.is_alive() for p in processes):
            peak = max(peak, server_connections(admin, database))
            time.sleep(0.2)
        for process in processes:
            process.join()
        busy, total = (after - before for after, before in zip(_cpu_times(), cpu_before, strict=True))
        while True:
            try:
                kind, detail = ready.get_nowait()
            except queue.Empty:
                break
            if kind == "error":
                errors.append(detail)
            elif kind == "holds":
                for purpose, held in detail.items():
                    holds[purpose] += held
        store = storage.connect(url)
        trials = optuna.load_study(study_name=spec.name, storage=store.storage).get_trials()
        store.close()
        if pooler:
            pooler.stop()
        admin.dispose()
    finished = [
        t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start >= go_time
    ]
    latencies = []
    ran = [t for t in trials if t.datetime_start and t.datetime_start >= go_time]
    for name in {t.user_attrs.get("worker") for t in ran}:
        own = sorted((t for t in ran if t.user_attrs.get("worker") == name), key=lambda t: t.datetime_start)
        previous_end = go_time
        for trial in own:
            latencies.append((trial.datetime_start - previous_end).total_seconds())
            previous_end = trial.datetime_complete or previous_end
    span = (max(t.datetime_complete for t in finished) - go_time).total_seconds() if finished else float("nan")
    per_worker = (spec.study.budget - history) / workers
    ideal = per_worker * spec.training.epochs * epoch_seconds
    claim_holds, reap_holds = holds["claiming a trial"], holds["reaping"]
    claims_per_s = 1000 / statistics.fmean(claim_holds) if claim_holds else float("nan")
    return {
        "workers": workers,
        "side": side,
        "trial s": spec.training.epochs * epoch_seconds,
        "history": history,
        "peak server connections": peak,
        "finished": len(finished) + history,
        "budget": spec.study.budget,
        "left running": sum(t.state == TrialState.RUNNING for t in trials),
        # No worker dies here: every trial reaped was a live worker's.
        "live trials reaped": sum(
            (TrialRecord.from_frozen(t).fail_reason or "").startswith("reaped by") for t in trials
        ),
        "trials/s": len(finished) / span if finished else 0.0,
        "claim p50 s": _percentile(latencies, 0.5),
        "claim p99 s": _percentile(latencies, 0.99),
        "claim hold p50 ms": _percentile(claim_holds, 0.5),
        "claim hold p99 ms": _percentile(claim_holds, 0.99),
        "claims": len(claim_holds),
        "reaps": len(reap_holds),
        "reap hold p50 ms": _percentile(reap_holds, 0.5),
        "reap hold p99 ms": _percentile(reap_holds, 0.99),
        "lock claims/s": claims_per_s,
        "ceiling at 210-s trials": claims_per_s * GPU_TRIAL_SECONDS,
        "efficiency": ideal / span if finished else 0.0,
        "machine CPU busy": busy / total if total else float("nan"),
        "errors": len(errors),
        "first error": errors[0] if errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 workers, 2 trials each of two 0.25-second epochs, 100 trials of history (proves the script runs)",
    )
    parser.add_argument("--counts", type=int, nargs="+", help="worker counts (default 8 32 128)")
    parser.add_argument("--trial-seconds", type=float, nargs="+", default=[10.0], help="trial lengths (10 epochs each)")
    parser.add_argument("--history", type=int, nargs="+", default=[0], help="finished trials already in the study")
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--label", help="the result file's name: pgbouncer_scale-LABEL.json (default: full or partial)")
    parser.add_argument("--sides", nargs="+", choices=("pgbouncer", "direct"), default=["pgbouncer", "direct"])
    parser.add_argument(
        "--threads-per-process", type=int, default=THREADS_PER_PROCESS,
        help="workers per process (1: each worker its own process, as in a real fleet)",
    )  # fmt: skip
    args = parser.parse_args()
    counts = args.counts or ([8] if args.quick else [8, 32, 128])
    epochs, per_worker = (2, 2) if args.quick else (EPOCHS, args.trials_per_worker)
    lengths = [1.0] if args.quick else args.trial_seconds
    histories = [100] if args.quick else args.history
    base = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    rows = []
    runs = [(w, t, h) for w in counts for t in lengths for h in histories]
    for index, (workers, trial_seconds, history) in enumerate(runs):
        sides = args.sides if index % 2 == 0 else args.sides[::-1]
        for side in sides:
            # The real study's search and its groups; no confirmation runs (they belong to the question).
            spec = base.model_copy(
                update={
                    "study": base.study.model_copy(
                        update={"name": f"scale-{workers}", "budget": history + workers * per_worker}
                    ),
                    "training": base.training.model_copy(update={"epochs": epochs}),
                    "confirm": Confirm(),
                    "baselines": [],
                }
            )
            row = _run(side, workers, spec, trial_seconds / epochs, args.threads_per_process, history)
            rows.append(row)
            print(row, flush=True)
    pooled = [r for r in rows if r["side"] == "pgbouncer"] or rows
    summary = {
        "pool_size": POOL_SIZE,
        "epochs_per_trial": epochs,
        "trials_per_worker": per_worker,
        "pgbouncer_peak_server_connections": max(r["peak server connections"] for r in pooled),
        "pgbouncer_min_efficiency": min(r["efficiency"] for r in pooled),
        "pgbouncer_exact_budget_everywhere": all(
            r["finished"] == r["budget"] and not r["left running"] for r in pooled
        ),
        "pgbouncer_errors": sum(r["errors"] for r in pooled),
        "live_trials_reaped": sum(r["live trials reaped"] for r in rows),
        "claim_hold_p99_ms_max": max(r["claim hold p99 ms"] for r in pooled),
        "median_efficiency": statistics.median(r["efficiency"] for r in pooled),
        "goal": f"through PgBouncer: at most {POOL_SIZE} server connections, efficiency >= 0.9, exact budget, "
        "no error, no live trial reaped; claim hold p99 <= 50 ms at 10,000 trials of history; ceiling >= 2,000 workers at 210-s trials",
    }
    default = (
        not args.counts and args.trial_seconds == [10.0] and args.history == [0]
        and args.sides == ["pgbouncer", "direct"] and args.threads_per_process == THREADS_PER_PROCESS
    )  # fmt: skip
    mode = "quick" if args.quick else args.label or ("full" if default else "partial")
    write("pgbouncer_scale", mode, rows, summary)


if __name__ == "__main__":
    main()
