"""Benchmark 4, part 2: the study's sampler + pruner against random search, replayed on real curves.

Each suggested configuration is answered from the tabular benchmark (nearest grid point: same
batch normalization, nearest dropout, nearest learning rate on a log scale), epoch by epoch, so
pruning stops a trial exactly where it would have stopped in training. Both sides get the study's
trial budget; random search runs without pruning. For each seed: random's final best val_acc,
its epochs, and the epochs the study's configuration needed to reach that val_acc. Sampler and
pruner are built by `sweeper.fleet.search` from the study file, exactly as workers build them.

    python -m benchmarks.search_efficiency [--table PATH] [--seeds 10] [--study FILE] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tabulate import tabulate

from benchmarks.build_table import TABLE, done, grid
from benchmarks.common import ROOT, median_ci, write
from sweeper import studyfile
from sweeper.fleet import comparison, search
from sweeper.studyfile import StudySpec
from sweeper.studyfile.search_sections import RandomSampler

RANDOM_SEED_OFFSET = 100_000


class Table:
    def __init__(self, path: Path) -> None:
        self.rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not self.rows:
            raise SystemExit(f"{path} is empty: build it with python -m benchmarks.build_table")
        self.epochs = min(row["epochs"] for row in self.rows)

    def nearest(self, params: dict) -> dict:
        """The grid point that answers a configuration: same batch normalization, nearest dropout,
        nearest learning rate on a log scale."""

        def distance(row: dict) -> tuple:
            c = row["config"]
            return (c["batchnorm"] != params["batchnorm"], abs(c["dropout"] - params["dropout"]),
                    abs(math.log10(c["learning_rate"]) - math.log10(params["learning_rate"])))  # fmt: skip

        return min(self.rows, key=distance)

    def curve(self, params: dict) -> list[float]:
        return self.nearest(params)["val_acc"][: self.epochs]

    def true_value(self, params: dict) -> float:
        """A configuration's value: its cell's best epoch (the model sweeper keeps is the best epoch's)."""
        return max(self.curve(params))

    def best_cell(self) -> dict:
        return max(self.rows, key=lambda row: max(row["val_acc"][: self.epochs]))

    def best_value(self) -> float:
        return max(self.best_cell()["val_acc"][: self.epochs])


@dataclass(frozen=True)
class Played:
    """One replayed trial: what it tried, the epochs it spent, the value its side told Optuna (None: pruned)."""

    params: dict
    epochs: int
    value: float | None


def trace_of(played: list[Played]) -> list[tuple[int, float]]:
    """(epochs spent so far, best value told so far) after each trial."""
    spent, best, trace = 0, -1.0, []
    for trial in played:
        spent, best = spent + trial.epochs, max(best, -1.0 if trial.value is None else trial.value)
        trace.append((spent, best))
    return trace


def replay(spec: StudySpec, table: Table, seed: int, tuned: bool) -> list[tuple[int, float]]:
    """(epochs spent so far, best finished val_acc so far) after each trial (see `replay_trials`)."""
    return trace_of(replay_trials(spec, table, seed, tuned))


def replay_trials(spec: StudySpec, table: Table, seed: int, tuned: bool) -> list[Played]:
    """The study's search (`tuned`) or random search, replayed trial by trial.

    Trial n is sampled with its own seed from (seed, n), as workers do; random search's study seeds
    are offset by RANDOM_SEED_OFFSET, so the two sides never share a study seed.
    """
    spec = spec.model_copy(update={
        "training": spec.training.model_copy(update={"epochs": table.epochs}),
        "sampler": spec.sampler.model_copy(update={"seed": seed}) if tuned
        else RandomSampler(type="random", seed=RANDOM_SEED_OFFSET + seed),
    })  # fmt: skip
    pruner = search.make_pruner(spec) if tuned else optuna.pruners.NopPruner()
    study = optuna.create_study(
        study_name=spec.name, direction="maximize", sampler=search.make_sampler(spec), pruner=pruner
    )  # Hyperband brackets hash the name
    if tuned:
        for baseline in spec.baselines:
            study.enqueue_trial(dict(baseline))
    played = []
    for number in range(spec.study.budget):
        if tuned and spec.compare and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):  # as a claim
            counts = comparison.group_counts(study.get_trials(deepcopy=False), spec)
            comparison.assign(study, spec, counts)  # [compare]'s group assignments, as a worker's claim makes them
        trial = study.ask()
        search.seed_trial(study.sampler, spec, number)
        search.suggest(trial, spec)
        curve = table.curve(trial.params)
        played.append(play(study, trial, curve, max(curve)))  # a worker records the best epoch's val_acc
    return played


def play(study: optuna.Study, trial: optuna.Trial, curve: list[float], value: float, first_step: int = 1) -> Played:
    """Answer a trial from its curve, epoch by epoch, until the pruner stops it or the curve ends;
    it is told `value` when it finishes. Epochs are reported as steps from `first_step` (sweeper
    counts from 1; Keras callbacks, and so Optuna's `KerasPruningCallback`, from 0)."""
    for epoch, val_acc in enumerate(curve, start=1):
        trial.report(val_acc, epoch - 1 + first_step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return Played(trial.params, epoch, None)
    study.tell(trial, value)
    return Played(trial.params, len(curve), value)


# Pruner × sampler settings compared by --compare; the study file's own setting is always run.
CANDIDATES: dict[str, dict] = {
    "no pruning": {"type": "none"},
    "threshold(0.15 from epoch 3)": {"type": "threshold", "lower": 0.15, "n_warmup_steps": 3},
    "median(10 start-up, from epoch 10)": {"type": "median", "n_startup_trials": 10, "n_warmup_steps": 10},
    "Hyperband(min 3, rf 3)": {"type": "hyperband", "min_resource": 3, "reduction_factor": 3},
    "Hyperband(min 5, rf 3)": {"type": "hyperband", "min_resource": 5, "reduction_factor": 3},
    "Hyperband(min 8, rf 2)": {"type": "hyperband", "min_resource": 8, "reduction_factor": 2},
    "ASHA(min 1, rf 3)": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "ASHA(min 8, rf 2)": {"type": "successive_halving", "min_resource": 8, "reduction_factor": 2},
}
SAMPLERS: dict[str, dict] = {
    "TPE": {"multivariate": False, "n_startup_trials": 10},
    "TPE multivariate": {"multivariate": True, "n_startup_trials": 10},
    "TPE multivariate, 5 start-up": {"multivariate": True, "n_startup_trials": 5},
}


def with_settings(spec: StudySpec, sampler: dict, pruner: dict) -> StudySpec:
    data = spec.model_dump()
    data["sampler"] = {**data["sampler"], "type": "tpe", **sampler}
    data["pruner"] = pruner
    return StudySpec.model_validate(data)


def evaluate(spec: StudySpec, table: Table, randoms: dict[int, list[Played]], jobs: int = 1) -> list[dict]:
    """Per seed: each side's final best and epochs, and the symmetric ratio: the study's epochs over
    random search's, each to reach the lower of the two final bests (dividing by random's whole
    budget instead would credit the study with the epochs random spent after its best)."""
    seeds = list(randoms)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(
            pool.map(_evaluate_seed, [spec] * len(seeds), [table] * len(seeds), seeds, [randoms[s] for s in seeds])
        )


def _evaluate_seed(spec: StudySpec, table: Table, seed: int, random_side: list[Played]) -> dict:
    tuned = replay_trials(spec, table, seed, tuned=True)
    ours, theirs = trace_of(tuned), trace_of(random_side)
    target = min(ours[-1][1], theirs[-1][1])
    study_to, random_to = (next(spent for spent, best in trace if best >= target) for trace in (ours, theirs))
    picked = max((t for t in tuned if t.value is not None), key=lambda t: t.value or 0.0)
    return {"seed": seed, "random best": theirs[-1][1], "random epochs": theirs[-1][0], "study best": ours[-1][1],
            "study epochs": ours[-1][0], "both reach": target, "study epochs to it": study_to,
            "random epochs to it": random_to, "ratio": study_to / random_to,
            "study regret": table.best_value() - table.true_value(picked.params)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "cifar10-regularization.toml")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from here (held-out checks of a chosen setting)"
    )
    parser.add_argument("--quick", action="store_true", help="3 seeds; --compare with the first sampler only")
    parser.add_argument(
        "--pruners-only", action="store_true", help="--compare the pruners with the study file's own sampler only"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes, a share of the seeds each")
    parser.add_argument(
        "--compare", action="store_true", help="also replay the candidate settings in CANDIDATES × SAMPLERS"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if args.table == TABLE and len(done(TABLE)) < len(grid(quick=False)):
        raise SystemExit(f"{TABLE} holds {len(done(TABLE))} of {len(grid(quick=False))} configurations: "
                         "finish it with python -m benchmarks.build_table first")  # fmt: skip
    spec, table = studyfile.load(args.study), Table(args.table)
    seeds = range(args.first_seed, args.first_seed + (3 if args.quick else args.seeds))
    randoms = {seed: replay_trials(spec, table, seed, tuned=False) for seed in seeds}
    rows = evaluate(spec, table, randoms, args.jobs)
    ratio = statistics.median(r["ratio"] for r in rows)
    summary = {
        "table": str(args.table.relative_to(ROOT) if args.table.is_relative_to(ROOT) else args.table),
        "configurations": len(table.rows), "epochs": table.epochs, "budget": spec.study.budget, "seeds": [seeds.start, seeds.stop - 1],
        "sampler": spec.sampler.model_dump(), "pruner": spec.pruner.model_dump(), "ratio": "symmetric",
        "median_epoch_ratio": median_ci([r["ratio"] for r in rows]),
        "median_study_regret": median_ci([r["study regret"] for r in rows]),
    }  # fmt: skip
    if args.compare:
        summary["candidates"] = []
        own = {"study file's sampler": spec.sampler.model_dump(exclude={"type"})}
        samplers = own if args.pruners_only else dict(list(SAMPLERS.items())[: 1 if args.quick else None])
        for sampler_name, sampler in samplers.items():
            for pruner_name, pruner in CANDIDATES.items():
                candidate = evaluate(with_settings(spec, sampler, pruner), table, randoms, args.jobs)
                summary["candidates"].append({
                    "setting": f"{sampler_name}, {pruner_name}", "sampler": sampler, "pruner": pruner,
                    "median ratio": statistics.median(r["ratio"] for r in candidate),
                    "median study regret": statistics.median(r["study regret"] for r in candidate),
                    "median study epochs": statistics.median(r["study epochs"] for r in candidate),
                })  # fmt: skip
        summary["candidates"].sort(key=lambda c: (c["median ratio"], c["median study regret"]))
        columns = ("setting", "median ratio", "median study regret", "median study epochs")
        print(tabulate([{k: c[k] for k in columns} for c in summary["candidates"]], headers="keys", floatfmt=".3g"))
        print(
            f"the study file's own setting: median ratio {ratio:.3g}; the best candidate: {summary['candidates'][0]['setting']}"
        )
    write(
        "search_efficiency",
        ("quick" if args.quick else "full")
        + (f"-from-seed-{args.first_seed}" if args.first_seed else "")
        + ("-with-compare" if args.compare else ""),
        rows,
        summary,
    )


if __name__ == "__main__":
    main()
