"""Head to head: the tutorial study's defaults against plain Optuna as optuna-examples writes it.

Plain Optuna here is `optuna-examples/keras/keras_integration.py`'s recipe on the same model and
data: default `TPESampler`, `MedianPruner(n_startup_trials=5, n_warmup_steps=5)`, val_acc reported
after every epoch, the tutorial's configuration enqueued first, the study's epochs per trial, one
trial at a time per process (live, `--plain-jobs K` processes share one journal-file study, as
Optuna's docs parallelize a script). The study side is `studies/cifar10-regularization.toml` as it ships (its sampler,
Hyperband rungs, `[compare]` group assignments, baseline and, live, its confirmation runs).

    python -m benchmarks.head_to_head replay [--seeds 30] [--plain-trials N] [--study-budget N] [--quick]
    python -m benchmarks.head_to_head live --out DIR [--backend jax] [--workers 4] [--plain-trials 20]
                                          [--plain-jobs 1] [--cpu]

`replay` answers every trial from the tabular benchmark (`benchmarks/data`), as benchmark 4 does:
per seed, each side's best val_acc and the epochs it spent, and each side's best once both have
spent the same epochs. It cannot see seed noise, so it says nothing about confirmation.

`live` trains for real: the study with `sweeper sweep` (its workers, SQLite) and the plain script
in processes beside it, then each side's pick (the study's best confirmed configuration, plain
Optuna's best trial) trained again with the same 3 seeds by the same code (a process per seed), and the study's best
model exported and re-evaluated (`sweeper export`). Written to
DIR/head_to_head.json: epochs spent by each side, its pick, the confirmed values, mean and 95%
interval, and Welch's p for the difference. `--cpu` shrinks it to a smoke run (the test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import optuna

from benchmarks.build_table import TABLE
from benchmarks.common import ROOT, data_dir, write
from benchmarks.search_efficiency import Table, play, replay
from sweeper import studyfile
from sweeper.reporting import uncertainty

STUDY = ROOT / "studies" / "cifar10-regularization.toml"
CONFIRM_SEEDS = (1, 2, 3)
PLAIN_PRUNER = {"n_startup_trials": 5, "n_warmup_steps": 5}
PLAIN_NAME = "plain-optuna"


def plain_study(seed: int | None, storage: optuna.storages.BaseStorage | None, tutorial: dict) -> optuna.Study:
    """The optuna-examples recipe: default TPE, the median pruner, the tutorial's configuration first."""
    study = optuna.create_study(
        study_name=PLAIN_NAME,
        direction="maximize",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**PLAIN_PRUNER),
    )
    study.enqueue_trial(tutorial)
    return study


def suggest_plain(trial: optuna.trial.Trial, spec: studyfile.StudySpec) -> dict:
    """The same space, suggested as a hand-written objective would."""
    space = spec.space
    return {
        "dropout": trial.suggest_float("dropout", space.dropout.low, space.dropout.high),
        "batchnorm": trial.suggest_categorical("batchnorm", space.batchnorm.choices),
        "learning_rate": trial.suggest_float(
            "learning_rate", space.learning_rate.low, space.learning_rate.high, log=True
        ),
    }


def _replay_plain(spec: studyfile.StudySpec, table: Table, seed: int, trials: int) -> list[tuple[int, float]]:
    study = plain_study(seed, None, spec.baselines[0])
    spent, best, trace = 0, -1.0, []
    for _ in range(trials):
        trial = study.ask()
        curve = table.curve(suggest_plain(trial, spec))
        epochs, finished = play(study, trial, curve, curve[-1])  # keras_integration.py returns the last epoch's
        spent, best = spent + epochs, max(best, finished)
        trace.append((spent, best))
    return trace


def _best_by(trace: list[tuple[int, float]], epochs: int) -> float:
    return max((best for spent, best in trace if spent <= epochs), default=-1.0)


def _reached(trace: list[tuple[int, float]], target: float) -> float:
    return next((spent for spent, best in trace if best >= target), math.inf)


def run_replay(seeds: range, plain_trials: int | None, study_budget: int | None, mode: str) -> dict[str, Any]:
    spec, table = studyfile.load(STUDY), Table(TABLE)
    if study_budget:
        spec = spec.model_copy(update={"study": spec.study.model_copy(update={"budget": study_budget})})
    trials = plain_trials or spec.study.budget
    rows = []
    for seed in seeds:
        ours = replay(spec, table, seed, tuned=True)
        plain = _replay_plain(spec, table, seed, trials)
        common, target = min(ours[-1][0], plain[-1][0]), max(ours[-1][1], plain[-1][1])
        rows.append({
            "seed": seed, "study best": ours[-1][1], "study epochs": ours[-1][0],
            "plain best": plain[-1][1], "plain epochs": plain[-1][0], "same epochs": common,
            "study best at same epochs": _best_by(ours, common), "plain best at same epochs": _best_by(plain, common),
            "study epochs to the better best": _reached(ours, target), "plain epochs to the better best": _reached(plain, target),
        })  # fmt: skip
    wins = sum(r["study best at same epochs"] > r["plain best at same epochs"] for r in rows)
    ties = sum(r["study best at same epochs"] == r["plain best at same epochs"] for r in rows)
    summary = {
        "table": str(TABLE.relative_to(ROOT)), "epochs": table.epochs, "seeds": [seeds.start, seeds.stop - 1],
        "study_trials": spec.study.budget, "plain_trials": trials,
        "median_study_best": statistics.median(r["study best"] for r in rows),
        "median_plain_best": statistics.median(r["plain best"] for r in rows),
        "median_study_epochs": statistics.median(r["study epochs"] for r in rows),
        "median_plain_epochs": statistics.median(r["plain epochs"] for r in rows),
        "median_study_epochs_to_the_better_best": statistics.median(r["study epochs to the better best"] for r in rows),
        "median_plain_epochs_to_the_better_best": statistics.median(r["plain epochs to the better best"] for r in rows),
        "study_first_to_the_better_best": sum(
            r["study epochs to the better best"] < r["plain epochs to the better best"] for r in rows
        ),
        "study_wins_at_same_epochs": wins, "ties_at_same_epochs": ties, "seeds_run": len(rows),
    }  # fmt: skip
    write("head_to_head", mode, rows, summary)
    return summary


# --- live -----------------------------------------------------------------------------------------


def _spec_for(cpu: bool) -> dict:
    raw = tomllib.loads(STUDY.read_text())
    if cpu:  # a smoke run: a few hundred images, 2 epochs, a budget that still holds both groups
        raw["study"]["budget"] = 4
        raw["training"].update(epochs=2, max_train_images=300)
        raw["compare"]["min_trials"] = 1
        raw["confirm"]["seeds"] = 1
        raw["pruner"] = {"type": "none"}
    return raw


def _dataset(spec: studyfile.StudySpec, cache: Path):
    from sweeper.training import data, prepared

    return prepared.open_prepared(data.prepare(data_dir(), spec.training, cache))


def fit(
    params: dict, seed: int, spec: studyfile.StudySpec, dataset, trial: optuna.trial.Trial | None = None
) -> list[float]:
    """Train once; val_acc per epoch. With a trial: report every epoch and stop when it is pruned."""
    import keras

    from sweeper.training.model import build_model

    class Pruning(keras.callbacks.Callback):
        pruned = False

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            trial.report(float(logs["val_acc"]), epoch + 1)
            if trial.should_prune():
                self.model.stop_training = self.pruned = True

    keras.utils.set_random_seed(seed)
    model = build_model(**params, jit_compile=spec.training.jit_compile)
    pruning = Pruning() if trial else None
    history = model.fit(
        dataset.x_train, dataset.y_train, batch_size=spec.training.batch_size, epochs=spec.training.epochs,
        validation_data=(dataset.x_val, dataset.y_val), callbacks=[pruning] if pruning else [], verbose=0,
    )  # fmt: skip
    keras.backend.clear_session()
    values = [float(v) for v in history.history["val_acc"]]
    if pruning and pruning.pruned:
        trial.set_user_attr("epochs", len(values))
        raise optuna.TrialPruned()
    return values


def _plain_storage(journal: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def _plain_main(spec_path: Path, journal: Path, cache: Path, trials: int, seed: int) -> None:
    """One plain-side process: `study.optimize` on the shared plain study, one trial at a time."""
    spec = studyfile.load(spec_path)
    dataset = _dataset(spec, cache)
    study = optuna.load_study(
        study_name=PLAIN_NAME,
        storage=_plain_storage(journal),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**PLAIN_PRUNER),
    )

    def objective(trial: optuna.trial.Trial) -> float:
        values = fit(suggest_plain(trial, spec), 42, spec, dataset, trial)
        trial.set_user_attr("epochs", len(values))
        trial.set_user_attr("best_val_acc", max(values))
        return values[-1]

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:  # the log outlives a cut-off run
        print(json.dumps({"trial": trial.number, "state": trial.state.name, "value": trial.value,
                          "params": trial.params, **trial.user_attrs}), flush=True)  # fmt: skip

    study.optimize(objective, n_trials=trials, callbacks=[log])


def _confirm_main(spec_path: Path, params: dict, cache: Path, seed: int) -> None:
    """Train one configuration with one confirmation seed; print the best epoch's val_acc."""
    spec = studyfile.load(spec_path)
    print(json.dumps(max(fit(params, seed, spec, _dataset(spec, cache)))))


def _spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _wait(process: subprocess.Popen, log: Path, what: str) -> None:
    if process.wait() != 0:
        raise SystemExit(f"{what} exited {process.returncode}:\n{log.read_text()[-3000:]}")


def run_live(out: Path, backend: str, workers: int, plain_trials: int, plain_jobs: int, cpu: bool) -> dict[str, Any]:
    import tomli_w

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="head-to-head-"))
    spec_path = work / "study.toml"
    spec_path.write_text(tomli_w.dumps(_spec_for(cpu)))
    spec = studyfile.load(spec_path)
    env = {**os.environ, "KERAS_BACKEND": backend, "SWEEPER_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1",
           "SWEEPER_DATA_DIR": str(data_dir()), "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # fmt: skip
    ours_url, journal = f"sqlite:///{work / 'study.db'}", work / "plain.journal"
    plain_study(None, _plain_storage(journal), spec.baselines[0])
    shares = [plain_trials // plain_jobs + (job < plain_trials % plain_jobs) for job in range(plain_jobs)]
    gpu = ["--gpu", "none"] if cpu else ["--gpu", "require", "--workers-per-gpu", str(workers)]
    started = time.monotonic()
    sweep = _spawn(["-m", "sweeper", "sweep", str(spec_path), "--workers", str(workers), "--storage", ours_url,
                    "--backend", backend, "--no-live", *gpu], env, out / "study.log")  # fmt: skip
    plains = [
        _spawn(
            [
                "-m",
                "benchmarks.head_to_head",
                "_plain",
                str(spec_path),
                str(journal),
                str(work / "cache"),
                str(share),
                str(job),
            ],
            env,
            out / f"plain-{job}.log",
        )  # fmt: skip
        for job, share in enumerate(shares)
    ]
    _wait(sweep, out / "study.log", "the study's sweep")
    for job, plain in enumerate(plains):
        _wait(plain, out / f"plain-{job}.log", "the plain Optuna script")
    searched = time.monotonic() - started
    export = subprocess.run(
        [sys.executable, "-m", "sweeper", "export", spec.name, "--best", "--out", str(out / "best.keras"),
         "--storage", ours_url], env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    export = (export.stdout + export.stderr).strip().splitlines()[-1:] + [f"exit {export.returncode}"]
    sides = {"study": _study_side(ours_url, spec.name), "plain": _plain_side(_plain_storage(journal))}
    (out / "head_to_head.json").write_text(json.dumps({"searched_only": True, "sides": sides}, indent=2))
    confirmers = {
        (name, seed): _spawn(
            [
                "-m",
                "benchmarks.head_to_head",
                "_confirm",
                str(spec_path),
                json.dumps(side["pick"]),
                str(work / "cache"),
                str(seed),
            ],
            env,
            out / f"confirm-{name}-{seed}.log",
        )  # fmt: skip
        for name, side in sides.items()
        for seed in CONFIRM_SEEDS
    }
    for (name, seed), process in confirmers.items():
        _wait(process, out / f"confirm-{name}-{seed}.log", f"confirming the {name} side's pick")
    for name in sides:
        logs = [out / f"confirm-{name}-{seed}.log" for seed in CONFIRM_SEEDS]
        values = [json.loads(log.read_text().strip().splitlines()[-1]) for log in logs]
        est = uncertainty.estimate(values)
        sides[name]["confirmed"] = {"seeds": list(CONFIRM_SEEDS), "values": values, "mean": est.mean, "ci95": est.ci95}
    ours, theirs = sides["study"]["confirmed"]["values"], sides["plain"]["confirmed"]["values"]
    result = {
        "backend": backend, "cpu": cpu, "workers": workers, "plain_trials": plain_trials, "plain_jobs": plain_jobs, "data": str(data_dir()), "training": spec.training.model_dump(),
        "search_seconds": searched, "sides": sides, "welch_p": uncertainty.welch_p(ours, theirs),
        "study_ahead_by": statistics.mean(ours) - statistics.mean(theirs),
        "study_epochs_over_plain": sides["study"]["epochs"] / sides["plain"]["epochs"],
        "export": export,
    }  # fmt: skip
    (out / "head_to_head.json").write_text(json.dumps(result, indent=2))
    return result


def _epochs(trial: optuna.trial.FrozenTrial) -> int:
    history = trial.user_attrs.get("history", {}).get("val_acc")
    return len(history) if history is not None else trial.user_attrs.get("epochs", 0)


def _study_side(url: str, name: str) -> dict[str, Any]:
    from sweeper.reporting import summary
    from sweeper.storage.records import TrialRecord

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    content = summary.summary(study, url)
    pick = content["confirmed"][0]["params"] if content["confirmed"] else content["best"]["params"]
    return {
        "trials": len(trials),
        "epochs": sum(_epochs(t) for t in trials),
        "confirmation_epochs": sum(_epochs(t) for t in trials if TrialRecord.from_frozen(t).is_confirmation),
        "best_search_val_acc": content["best"]["val_acc"],
        "pick": pick,
        "own_confirmation": content["confirmed"][:1],
        "answer": content["answer"],
    }


def _plain_side(storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    study = optuna.load_study(study_name=PLAIN_NAME, storage=storage)
    trials = study.get_trials(deepcopy=False)
    return {
        "trials": len(trials),
        "epochs": sum(_epochs(t) for t in trials),
        "best_search_val_acc": max(t.user_attrs.get("best_val_acc", -1.0) for t in trials),
        "best_value": study.best_value,
        "pick": study.best_params,
    }


def main() -> int:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if len(sys.argv) > 1 and sys.argv[1] == "_plain":
        _plain_main(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_confirm":
        _confirm_main(Path(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.head_to_head", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replayer = commands.add_parser("replay", help="both sides on the tabular benchmark, many seeds")
    replayer.add_argument("--seeds", type=int, default=30)
    replayer.add_argument("--quick", action="store_true", help="3 seeds")
    replayer.add_argument("--plain-trials", type=int, help="plain Optuna's trials (default: the study's budget)")
    replayer.add_argument("--study-budget", type=int, help="the study's search budget (default: its study file's)")
    live = commands.add_parser("live", help="both sides trained for real; both picks confirmed over 3 seeds")
    live.add_argument("--out", type=Path, required=True)
    live.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    live.add_argument("--workers", type=int, default=4)
    live.add_argument("--plain-trials", type=int, default=20, help="plain Optuna's trials")
    live.add_argument("--plain-jobs", type=int, default=1, help="plain Optuna processes sharing its study")
    live.add_argument("--cpu", action="store_true", help="a smoke run on the CPU (the test)")
    args = parser.parse_args()
    if args.command == "replay":
        mode = "quick" if args.quick else "replay" if not args.study_budget else f"replay-{args.study_budget}-trials"
        run_replay(range(3 if args.quick else args.seeds), args.plain_trials, args.study_budget, mode)
    else:
        print(
            json.dumps(
                run_live(
                    args.out,
                    args.backend,
                    args.workers,
                    4 if args.cpu else args.plain_trials,
                    args.plain_jobs,
                    args.cpu,
                ),
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
