"""Head to head: the tutorial study's defaults against plain Optuna as optuna-examples writes it.

Plain Optuna is `optuna-examples/keras/keras_integration.py` on the same model and data, exactly
as its authors wrote it: `create_study(direction="maximize", pruner=MedianPruner())` (TPE with
its defaults), val_acc reported after every epoch from step 0 (`KerasPruningCallback`), the last
epoch's val_acc returned, no configuration enqueued. Beside it, in the replay, the same script
with `MedianPruner(n_startup_trials=5, n_warmup_steps=5)`, named as such. The study side is
`studies/cifar10-regularization.toml` as it ships (its sampler, Hyperband rungs, `[compare]`
group assignments, baseline and, live, its confirmation runs).

    python -m benchmarks.head_to_head replay [--seeds 200] [--first-seed S] [--budgets 20 60] [--jobs N] [--quick]
    python -m benchmarks.head_to_head live --out DIR [--backend jax] [--workers 4] [--plain-trials 20]
                                          [--plain-jobs 1] [--cpu]

`replay` answers every trial from the tabular benchmark (`benchmarks/data`), as benchmark 4
does, on independent seeds (each side's sampler seeded from the race seed through
`SeedSequence`), at each budget of trials per side. Per seed and side (`benchmarks.race`): the
pick's regret to the best cell (judged by the cell's true value, not by what the side saw), the
epochs until its pick came within 0.005 of the best cell, its epochs, both sides' regrets once
both spent the same epochs, and for the study whether its pick's batch normalization group is
the best cell's; medians with bootstrap intervals and paired sign tests. The committed table has
one training seed per cell, so the replay sees no seed noise and says nothing about confirmation.

`live` trains for real: the study with `sweeper sweep` (its workers, SQLite) and the plain script
in processes beside it, then each side's pick (the study's best confirmed configuration, plain
Optuna's best trial) trained again with the same 3 seeds by the same code (a process per seed), and the study's best
model exported and re-evaluated (`sweeper export`). Written to
DIR/head_to_head.json: epochs spent by each side, its pick, the confirmed values, mean and 95%
interval, and Welch's p for the difference. `--cpu` shrinks it to a smoke run (the test).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from scipy.stats import binomtest
from tabulate import tabulate

from benchmarks.build_table import TABLE
from benchmarks.common import ROOT, data_dir, fmt_ci, median_ci, sign_test, write
from benchmarks.race import NEAR, Run
from benchmarks.search_efficiency import Played, Table, play, replay_trials, trace_of
from sweeper import studyfile
from sweeper.fleet import search
from sweeper.reporting import uncertainty

STUDY = ROOT / "studies" / "cifar10-regularization.toml"
CONFIRM_SEEDS = (1, 2, 3)
PLAIN_NAME = "plain-optuna"
BUDGETS = (20, 60)


@dataclass(frozen=True)
class Peer:
    """Plain Optuna as a script writes it: TPE with its defaults, a median pruner, no baseline."""

    name: str
    pruner: dict[str, int]
    """`MedianPruner`'s arguments."""


PEERS = (
    Peer("optuna-examples keras_integration.py (MedianPruner())", {}),
    Peer("the same with MedianPruner(5, 5)", {"n_startup_trials": 5, "n_warmup_steps": 5}),
)
EXAMPLE = PEERS[0]
"""`optuna-examples/keras/keras_integration.py` exactly: the live race's plain side."""
STUDY_SIDE = "sweeper study"


def plain_study(
    peer: Peer, seed: int | None, storage: optuna.storages.BaseStorage | None = None, name: str = PLAIN_NAME
) -> optuna.Study:
    """The script's study: `create_study(direction="maximize", pruner=MedianPruner(...))`; the seed
    (the script leaves it unset) only makes a replay repeatable."""
    return optuna.create_study(
        study_name=name,
        direction="maximize",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**peer.pruner),
    )


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


def replay_peer(peer: Peer, spec: studyfile.StudySpec, table: Table, seed: int, trials: int) -> list[Played]:
    """The script replayed: epochs reported from step 0 (`KerasPruningCallback`), the last epoch's
    val_acc returned (the script's `model.evaluate` after `fit`)."""
    study = plain_study(peer, seed)
    played = []
    for _ in range(trials):
        trial = study.ask()
        curve = table.curve(suggest_plain(trial, spec))
        played.append(play(study, trial, curve, curve[-1], first_step=0))
    return played


def side_seed(seed: int, side: int) -> int:
    """A seed for another side of the same race seed, independent of the study's own trial seeds."""
    return search.trial_seed(seed, 1_000_000 + side)


@functools.cache
def _race_inputs(pruner: str | None = None) -> tuple[studyfile.StudySpec, Table]:
    """The shipped study (with another `[pruner]`, given as JSON, to race a candidate default) and the table."""
    spec = studyfile.load(STUDY)
    if pruner:
        spec = studyfile.StudySpec.model_validate({**spec.model_dump(), "pruner": json.loads(pruner)})
    return spec, Table(TABLE)


def race_seed(seed: int, budgets: tuple[int, ...], pruner: str | None = None) -> list[dict[str, Any]]:
    """Every side on one seed at each budget: a row per side with its regret, epochs and epochs to
    near the best cell; a peer's row also has both sides' regrets once both spent the same epochs."""
    spec, table = _race_inputs(pruner)
    most = max(budgets)
    peers = {p.name: replay_peer(p, spec, table, side_seed(seed, k), most) for k, p in enumerate(PEERS)}
    random_side = replay_trials(spec, table, seed, tuned=False)  # its own offset seeds; budget: the study file's
    rows = []
    for budget in budgets:
        budgeted = spec.model_copy(update={"study": spec.study.model_copy(update={"budget": budget})})
        study = Run(replay_trials(budgeted, table, seed, tuned=True), table)
        ratio = _symmetric_ratio(study, Run(random_side[:budget], table))
        sides = {STUDY_SIDE: study, **{name: Run(played[:budget], table) for name, played in peers.items()}}
        for name, run in sides.items():
            row: dict[str, Any] = {"seed": seed, "trials": budget, "side": name, "regret": run.regret(),
                                   "epochs": run.epochs, "epochs to near": run.epochs_to_near()}  # fmt: skip
            if name == STUDY_SIDE:
                row.update({"right group": study.right_group(spec.groups_by), "random ratio": ratio})
            else:  # both judged once both have spent the same epochs
                common = min(study.epochs, run.epochs)
                row.update({"equal epochs": common, "study regret at equal epochs": study.regret(common),
                            "regret at equal epochs": run.regret(common)})  # fmt: skip
            rows.append(row)
    return rows


def _symmetric_ratio(study: Run, random: Run) -> float:
    """The study's epochs over random search's, each to reach the lower of the two sides' final bests."""
    ours, theirs = trace_of(study.played), trace_of(random.played)
    target = min(ours[-1][1], theirs[-1][1])
    first = [next(spent for spent, best in trace if best >= target) for trace in (ours, theirs)]
    return first[0] / first[1]


def run_replay(seeds: range, budgets: tuple[int, ...], mode: str, jobs: int, pruner: str | None) -> dict[str, Any]:
    spec, table = _race_inputs(pruner)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        batches = pool.map(race_seed, seeds, [budgets] * len(seeds), [pruner] * len(seeds))
        rows = [row for batch in batches for row in batch]
    summary: dict[str, Any] = {
        "table": str(TABLE.relative_to(ROOT)), "table_seeds_per_cell": 1, "epochs": table.epochs,
        "best_cell": table.best_cell()["config"], "best_cell_value": table.best_value(),
        "seeds": [seeds.start, seeds.stop - 1], "near": NEAR, "pruner": spec.pruner.model_dump(), "budgets": {},
    }  # fmt: skip
    lines = []
    for budget in budgets:
        at = {side: [r for r in rows if r["trials"] == budget and r["side"] == side] for side in _sides()}
        ours = at[STUDY_SIDE]
        right = binomtest(sum(r["right group"] for r in ours), len(ours))
        interval = right.proportion_ci()  # Clopper-Pearson, exact
        entry: dict[str, Any] = {
            "right_group": [right.statistic, interval.low, interval.high],
            "random_ratio": median_ci([r["random ratio"] for r in ours]),
            "study_by_half": [_half(ours, half) for half in _halves(seeds)],  # to choose on one, report on the other
        }
        for name, side_rows in at.items():
            side: dict[str, Any] = {
                "median_regret": median_ci([r["regret"] for r in side_rows]),
                "median_epochs": statistics.median(r["epochs"] for r in side_rows),
                "share_near": sum(math.isfinite(r["epochs to near"]) for r in side_rows) / len(side_rows),
                "median_epochs_to_near": median_ci([r["epochs to near"] for r in side_rows]),
            }
            if name != STUDY_SIDE:  # paired on seeds: rows of both sides come in seed order
                side["study_vs_this_regret"] = sign_test([r["regret"] for r in ours], [r["regret"] for r in side_rows])
                side["study_vs_this_regret_at_equal_epochs"] = sign_test(
                    [r["study regret at equal epochs"] for r in side_rows],
                    [r["regret at equal epochs"] for r in side_rows],
                )
                side["study_vs_this_epochs_to_near"] = sign_test(
                    [r["epochs to near"] for r in ours], [r["epochs to near"] for r in side_rows]
                )
            entry[name] = side
            lines.append(_line(budget, name, side, entry["right_group"] if name == STUDY_SIDE else None))
        summary["budgets"][str(budget)] = entry
    write("head_to_head", mode, rows, summary, echo=False)
    print(tabulate(lines, headers="keys"))
    for budget, entry in summary["budgets"].items():
        ratio = fmt_ci(entry["random_ratio"], ".2f")
        print(f"{budget} trials: the study's epochs / random search's, each to the lower of their final bests: {ratio}")
        for half in entry["study_by_half"]:
            print(f"{budget} trials, seeds {half['seeds'][0]}-{half['seeds'][1]}: the study's pick near the best cell in "
                  f"{half['share_near']:.0%} of seeds, mean regret {half['mean_regret']:.4f}, median epochs {half['median_epochs']:.0f}")  # fmt: skip
    print(
        "regret: the best cell's value minus the pick's cell's; study vs this: seeds the study's pick is better/worse/tied"
    )
    return summary


def _halves(seeds: range) -> tuple[range, range]:
    middle = seeds.start + len(seeds) // 2
    return range(seeds.start, middle), range(middle, seeds.stop)


def _half(rows: list[dict[str, Any]], half: range) -> dict[str, Any]:
    """The study's pick over one half of the seeds: how often near the best cell, its mean regret, its epochs."""
    picked = [r for r in rows if r["seed"] in half]
    return {
        "seeds": [half.start, half.stop - 1],
        "share_near": sum(math.isfinite(r["epochs to near"]) for r in picked) / len(picked),
        "mean_regret": statistics.fmean(r["regret"] for r in picked),
        "median_epochs": statistics.median(r["epochs"] for r in picked),
    }


def _sides() -> tuple[str, ...]:
    return (STUDY_SIDE, *(p.name for p in PEERS))


def _line(budget: int, name: str, side: dict[str, Any], right_group: list[float] | None) -> dict[str, Any]:
    line = {
        "trials": budget, "side": name, "median regret [95% CI]": fmt_ci(side["median_regret"]),
        f"near (within {NEAR})": f"{side['share_near']:.0%}",
        "median epochs to near [95% CI]": fmt_ci(side["median_epochs_to_near"], ".0f"),
        "median epochs": f"{side['median_epochs']:.0f}",
        "right group [95% CI]": "-" if right_group is None else fmt_ci(right_group, ".1%"),
    }  # fmt: skip
    if "study_vs_this_regret" in side:
        for label, key in (("study vs this: regret", "study_vs_this_regret"),
                           ("at equal epochs", "study_vs_this_regret_at_equal_epochs")):  # fmt: skip
            test = side[key]
            line[label] = f"{test['wins']}/{test['losses']}/{test['ties']} p={test['p']:.2g}"
    return line


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
            trial.report(float(logs["val_acc"]), epoch)  # from step 0, as `KerasPruningCallback` reports
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
        pruner=optuna.pruners.MedianPruner(**EXAMPLE.pruner),
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
    plain_study(EXAMPLE, None, _plain_storage(journal))
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
    replayer.add_argument("--seeds", type=int, default=200)
    replayer.add_argument("--first-seed", type=int, default=0, help="seeds run from here (a held-out half)")
    replayer.add_argument("--quick", action="store_true", help="3 seeds")
    replayer.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="trials per side")
    replayer.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes, a share of the seeds each")
    replayer.add_argument(
        "--pruner", help='race the study with another [pruner], as JSON: \'{"type": "hyperband", ...}\''
    )
    live = commands.add_parser("live", help="both sides trained for real; both picks confirmed over 3 seeds")
    live.add_argument("--out", type=Path, required=True)
    live.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    live.add_argument("--workers", type=int, default=4)
    live.add_argument("--plain-trials", type=int, default=20, help="plain Optuna's trials")
    live.add_argument("--plain-jobs", type=int, default=1, help="plain Optuna processes sharing its study")
    live.add_argument("--cpu", action="store_true", help="a smoke run on the CPU (the test)")
    args = parser.parse_args()
    if args.command == "replay":
        count = 3 if args.quick else args.seeds
        mode = "quick" if args.quick else "replay" + (f"-from-seed-{args.first_seed}" if args.first_seed else "")
        if args.pruner:
            mode += "-pruner-" + "-".join(str(v) for v in json.loads(args.pruner).values())
        run_replay(range(args.first_seed, args.first_seed + count), tuple(args.budgets), mode, args.jobs, args.pruner)
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
