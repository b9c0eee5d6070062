"""Shared by the benchmarks: the machine's description, result files, tables, a scratch PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from scipy.stats import binomtest
from tabulate import tabulate

from sweeper.studyfile import Confirm, StudySpec

# Benchmarks print their own tables; Optuna's per-study info lines and experimental notes are noise.
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("SWEEPER_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
SHARED_SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-py"
FIXTURE = ROOT / "tests" / "fixtures" / "cifar-10-batches-py"


def machine() -> dict[str, Any]:
    import numpy

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "optuna": optuna.__version__,
        "numpy": numpy.__version__,
    }


def data_dir() -> Path:
    """The real CIFAR-10 subset when present, else the committed slice (said in the results)."""
    given = os.environ.get("SWEEPER_DATA_DIR")
    if given:
        return Path(given)
    return SHARED_SUBSET if SHARED_SUBSET.is_dir() else FIXTURE


def write(name: str, mode: str, rows: list[dict[str, Any]], summary: dict[str, Any], *, echo: bool = True) -> Path:
    """Results as JSON, with the machine; `echo` prints the rows and the summary too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{mode}.json"
    path.write_text(
        json.dumps({"benchmark": name, "mode": mode, "machine": machine(), "summary": summary, "rows": rows}, indent=2)
    )
    if echo:
        print(tabulate(rows, headers="keys", floatfmt=".4g"))
        print(json.dumps(summary, indent=2))
    print(f"written to {path}")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A new database on $SWEEPER_BENCH_POSTGRES_URL (default: the local server), dropped afterwards."""
    server = os.environ.get("SWEEPER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"sweeper_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sqlalchemy.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def sweeper(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


def search_mechanics(spec: StudySpec, **updates: Any) -> StudySpec:
    """The real study file's search alone: no confirmation runs, no group assignments (whose reads and
    queued trials belong to the question, not to the fleet's mechanics these benchmarks measure)."""
    return spec.model_copy(update={**updates, "confirm": Confirm(), "compare": None})


BOOTSTRAP = 2000


def median_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """The median and a bootstrap 95% interval (quantiles without interpolation, so inf stays inf)."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.quantile(rng.choice(data, size=(BOOTSTRAP, len(data))), 0.5, axis=1, method="inverted_cdf")
    low, high = np.quantile(medians, [0.025, 0.975], method="inverted_cdf")
    return float(np.quantile(data, 0.5, method="inverted_cdf")), float(low), float(high)


def sign_test(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float | int]:
    """Paired on seeds: how often `ours` is lower (better regret, fewer epochs), higher, tied; two-sided p."""
    wins = sum(a < b for a, b in zip(ours, theirs, strict=True))
    losses = sum(a > b for a, b in zip(ours, theirs, strict=True))
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": len(ours) - wins - losses, "p": float(p)}


def fmt_ci(stat: Sequence[float], spec: str = ".4f") -> str:
    median, low, high = stat
    return f"{median:{spec}} [{low:{spec}}, {high:{spec}}]"


def add_history(url: str, spec: StudySpec, trials: int, epochs: int, seed: int = 0) -> None:
    """`trials` finished trials of the (opened) study as workers leave them: the space's parameters,
    a report for each of `epochs` epochs and a `history` of the metrics (what makes a real trial
    heavy to read). Written in bulk to Optuna's tables (PostgreSQL), a study with a long past in seconds:
    through Optuna's API each such trial is ~90 statements (10,000 trials: a quarter of an hour).
    Benchmark set-up only; sweeper itself never writes Optuna's tables."""
    rng = np.random.default_rng(seed)
    distributions = spec.space.distributions()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as db:
        study_id, first = db.execute(
            sqlalchemy.text(
                "SELECT s.study_id, coalesce(max(t.number) + 1, 0) FROM studies s "
                "LEFT JOIN trials t ON t.study_id = s.study_id WHERE s.study_name = :name GROUP BY s.study_id"
            ),
            {"name": spec.name},
        ).one()
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # Optuna's columns hold UTC
        ids = db.execute(
            sqlalchemy.text(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                "SELECT :first + n, :study_id, 'COMPLETE', :now, :now FROM generate_series(0, :trials - 1) n "
                "RETURNING trial_id"
            ),
            {"first": first, "study_id": study_id, "now": now, "trials": trials},
        ).scalars().all()  # fmt: skip
        params, values, reports, attrs = [], [], [], []
        for trial_id in ids:
            for name, dist in distributions.items():
                if isinstance(dist, optuna.distributions.CategoricalDistribution):
                    internal = float(rng.integers(len(dist.choices)))
                else:
                    internal = float(rng.uniform(dist.low, dist.high))  # type: ignore[attr-defined]
                dist_json = optuna.distributions.distribution_to_json(dist)
                params.append({"id": trial_id, "name": name, "value": internal, "dist": dist_json})
            curve = np.sort(rng.uniform(0.1, 0.7, epochs)).round(4).tolist()
            values.append({"id": trial_id, "value": curve[-1]})
            reports += [{"id": trial_id, "step": step, "value": v} for step, v in enumerate(curve, start=1)]
            history = {"val_acc": curve, "acc": curve, "loss": curve}
            attrs += [
                {"id": trial_id, "key": "worker", "value": json.dumps("history")},
                {"id": trial_id, "key": "history", "value": json.dumps(history)},
            ]
        db.execute(
            sqlalchemy.text(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                "VALUES (:id, :name, :value, :dist)"
            ),
            params,
        )
        db.execute(
            sqlalchemy.text(
                "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (:id, 0, :value, 'FINITE')"
            ),
            values,
        )
        db.execute(
            sqlalchemy.text(
                "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) "
                "VALUES (:id, :step, :value, 'FINITE')"
            ),
            reports,
        )
        db.execute(
            sqlalchemy.text("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (:id, :key, :value)"),
            attrs,
        )
    engine.dispose()
