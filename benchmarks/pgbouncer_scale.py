"""Benchmark 6: 8, 32 and 128 workers on one study, through PgBouncer (transaction pooling, a
server pool of 10) and straight to PostgreSQL, side by side.

Each worker runs the real worker loop (claims under the study lock, heartbeats, reports, tell)
with a training child that sleeps through 1-second epochs (0.25 s with --quick) instead of loading TensorFlow. The
workers are threads, 16 to a process (or each its own forked process with
`--threads-per-process 1`), each with its own connections, as separate workers have. Measured:
the peak number of PostgreSQL server connections, trials per second, claim latency (from a
worker's previous trial's end, or the start signal, to its next trial's start) p50/p99, scaling
efficiency against the ideal (every worker busy sleeping all the time), the exact budget, and the
errors. Sides alternate within each worker count. Runs with other counts, sides or threads write
`pgbouncer_scale-partial.json`, leaving the full table's file alone.

Needs root (PgBouncer runs as the postgres user) and Debian's pgbouncer.

    python -m benchmarks.pgbouncer_scale [--quick]
"""

from __future__ import annotations

import argparse
import datetime
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

from benchmarks.common import ROOT, scratch_postgres, search_mechanics, write
from benchmarks.worker_scaling import SleepingChild
from sweeper import storage, studyfile
from sweeper.fleet import open_study
from sweeper.fleet.worker import Worker
from sweeper.storage import urls
from sweeper.studyfile import StudySpec
from tests.pgbouncer import PgBouncer, own_database, server_connections

PASSWORD = "bench-pw"
POOL_SIZE = 10
THREADS_PER_PROCESS = 16


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
        study = open_study(store, spec)
        ready.put(("ready", name))
        go.wait()
        Worker(spec, store, study, Path("."), name=name, child=SleepingChild(epoch_seconds)).run()
    except Exception as exc:  # noqa: BLE001
        ready.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
    finally:
        store.close()


def _worker_process(
    url: str, spec_json: dict, first: int, count: int, epoch_seconds: float, ready: Any, go: Any
) -> None:
    import benchmarks.common  # noqa: F401  (quiet Optuna in this spawned process too)

    os.environ["SWEEPER_CONNECT_TIMEOUT"] = "20"  # the direct side at 128 workers: fail, don't wait forever
    spec = StudySpec.model_validate(spec_json)
    threads = [
        threading.Thread(target=_worker_thread, args=(url, spec, f"w{first + i}", epoch_seconds, ready, go))
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(side: str, workers: int, spec: StudySpec, epoch_seconds: float, per_process: int) -> dict[str, Any]:
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
        # One worker per process is forked (128 fresh interpreters would not fit in memory here).
        context = multiprocessing.get_context("spawn" if per_process > 1 else "fork")
        ready, go = context.Queue(), context.Event()
        processes = []
        for first in range(0, workers, per_process):
            count = min(per_process, workers - first)
            process = context.Process(
                target=_worker_process, args=(url, spec.model_dump(mode="json"), first, count, epoch_seconds, ready, go)
            )
            process.start()
            processes.append(process)
        errors: list[str] = []
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
            else:
                started += 1
        peak = server_connections(admin, database)
        go_time = datetime.datetime.now()
        go.set()
        while any(p.is_alive() for p in processes):
            peak = max(peak, server_connections(admin, database))
            time.sleep(0.2)
        for process in processes:
            process.join()
        while True:
            try:
                kind, detail = ready.get_nowait()
            except queue.Empty:
                break
            if kind == "error":
                errors.append(detail)
        store = storage.connect(url)
        trials = optuna.load_study(study_name=spec.name, storage=store.storage).get_trials()
        store.close()
        if pooler:
            pooler.stop()
        admin.dispose()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    latencies = []
    for name in {t.user_attrs.get("worker") for t in trials}:
        own = sorted((t for t in trials if t.user_attrs.get("worker") == name), key=lambda t: t.datetime_start)
        previous_end = go_time
        for trial in own:
            latencies.append((trial.datetime_start - previous_end).total_seconds())
            previous_end = trial.datetime_complete or previous_end
    span = (max(t.datetime_complete for t in finished) - go_time).total_seconds() if finished else float("nan")
    per_worker = spec.study.budget / workers
    ideal = per_worker * spec.training.epochs * epoch_seconds
    return {
        "workers": workers,
        "side": side,
        "peak server connections": peak,
        "finished": len(finished),
        "budget": spec.study.budget,
        "left running": sum(t.state == TrialState.RUNNING for t in trials),
        "trials/s": len(finished) / span if finished else 0.0,
        "claim p50 s": _percentile(latencies, 0.5),
        "claim p99 s": _percentile(latencies, 0.99),
        "efficiency": ideal / span if finished else 0.0,
        "errors": len(errors),
        "first error": errors[0] if errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 workers only, 2 trials of two 0.25-second epochs each (proves the script runs)",
    )
    parser.add_argument("--counts", type=int, nargs="+", help="worker counts (default 8 32 128)")
    parser.add_argument("--epochs", type=int, default=10, help="1-second epochs per trial")
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--sides", nargs="+", choices=("pgbouncer", "direct"), default=["pgbouncer", "direct"])
    parser.add_argument(
        "--threads-per-process", type=int, default=THREADS_PER_PROCESS,
        help="workers per process (1: each worker its own process, as in a real fleet)",
    )  # fmt: skip
    args = parser.parse_args()
    counts = args.counts or ([8] if args.quick else [8, 32, 128])
    epochs, per_worker = (2, 2) if args.quick else (args.epochs, args.trials_per_worker)
    epoch_seconds = 0.25 if args.quick else 1.0
    base = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    rows = []
    for index, workers in enumerate(counts):
        sides = args.sides if index % 2 == 0 else args.sides[::-1]
        for side in sides:
            spec = search_mechanics(
                base,
                study=base.study.model_copy(update={"name": f"scale-{workers}", "budget": workers * per_worker}),
                training=base.training.model_copy(update={"epochs": epochs}),
                baselines=[],
            )  # fmt: skip
            rows.append(_run(side, workers, spec, epoch_seconds=epoch_seconds, per_process=args.threads_per_process))
            print(rows[-1], flush=True)
    pooled = [r for r in rows if r["side"] == "pgbouncer"] or rows
    summary = {
        "pool_size": POOL_SIZE,
        "epochs_per_trial": epochs,
        "epoch_seconds": epoch_seconds,
        "trials_per_worker": per_worker,
        "pgbouncer_peak_server_connections": max(r["peak server connections"] for r in pooled),
        "pgbouncer_min_efficiency": min(r["efficiency"] for r in pooled),
        "pgbouncer_exact_budget_everywhere": all(
            r["finished"] == r["budget"] and not r["left running"] for r in pooled
        ),
        "pgbouncer_errors": sum(r["errors"] for r in pooled),
        "median_efficiency": statistics.median(r["efficiency"] for r in pooled),
        "goal": f"through PgBouncer: at most {POOL_SIZE} server connections, efficiency >= 0.9, exact budget, no error",
    }
    partial = args.counts or args.sides != ["pgbouncer", "direct"] or args.threads_per_process != THREADS_PER_PROCESS
    write("pgbouncer_scale", "quick" if args.quick else ("partial" if partial else "full"), rows, summary)


if __name__ == "__main__":
    main()
