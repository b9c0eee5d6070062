"""Benchmark 1: what the worker costs compared with a plain `model.fit` script, trial for trial.

A: `benchmarks/plain_fit.py`, the tutorial's script. B: the same trial (same model, data, seed,
epochs) through `sweeper worker` with its storage, reporting, pruning checks and child process,
as configured in the real study (a training child kept warm across trials). Runs alternate A B A B.
Reports the per-epoch throughput ratio (A's epoch time over B's, epochs after the first, which
carries graph tracing in both) and the fixed per-trial overhead: wall time minus epoch time,
per trial. With `--trials N` each worker run trains N trials of the same configuration, so the
worker's own start-up is shared out as it is in a sweep, and `--trials-per-child` shows what a
warm training child saves. With two counts (`--trials 2 6`) the worker runs both in each round,
and the difference splits B's fixed cost into a once-per-worker start-up (process, imports,
TensorFlow in the child, data) and the marginal cost of each further trial. That difference of
two noisy wall times is checked against a direct reading: for each trial after a worker's
first, the seconds it spent beyond its epochs (its wall time minus its epochs, plus the gap
since the previous trial ended), from the trials' own records.

    python -m benchmarks.trainer_overhead [--quick] [--epochs E] [--trials N [M]] [--trials-per-child K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import tomli_w

from benchmarks.common import ROOT, data_dir, median, sweeper, write
from sweeper.fleet.search import trial_seed

PARAMS = {"dropout": 0.2, "batchnorm": False, "learning_rate": 1e-4}
STUDY_SEED = 42


def _plain(folder: Path, epochs: int, images: int) -> dict:
    started = time.time()
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "plain_fit.py"), str(folder), str(epochs), str(images),
         "0.2", "false", "1e-4", str(trial_seed(STUDY_SEED, 0))],
        capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    wall = time.time() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "side": "A plain fit",
        "wall": wall,
        "epoch_seconds": result["epoch_seconds"],
        "val_acc": result["val_acc"][-1],
    }


def _worker(
    folder: Path, epochs: int, images: int, tmp: Path, index: int, trials: int, trials_per_child: int | None
) -> dict:
    spec = tomllib_load(ROOT / "studies" / "cifar10-regularization.toml")
    spec["study"].update(name=f"overhead-{index}", budget=trials)
    spec.pop("confirm", None)  # one configuration timed: no confirmation runs, no group assignments
    spec.pop("compare", None)
    if trials_per_child:
        spec["fleet"]["trials_per_child"] = trials_per_child
    spec["training"].update(epochs=epochs, **({"max_train_images": images} if images else {}))
    spec["space"] = {"dropout": {"low": 0.2, "high": 0.2}, "batchnorm": {"choices": [False]},
                     "learning_rate": {"low": 1e-4, "high": 1e-4, "log": True}}  # fmt: skip
    spec["sampler"]["seed"] = STUDY_SEED  # trial 0 trains with side A's seed
    path = tmp / f"overhead-{index}.toml"
    path.write_text(tomli_w.dumps(spec))
    url = f"sqlite:///{tmp / 'overhead.db'}"
    started = time.time()
    result = sweeper("worker", str(path), "--storage", url, "--data-dir", str(folder), "--gpu", "none",
                     env={**os.environ, "SWEEPER_CACHE_DIR": str(tmp / "cache")})  # fmt: skip
    wall = time.time() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    done = optuna.load_study(study_name=f"overhead-{index}", storage=url).get_trials()
    epoch_seconds = [t.user_attrs["history"]["epoch_seconds"] for t in done]
    beyond_epochs = [
        (trial.datetime_start - before.datetime_complete).total_seconds()
        + trial.user_attrs["wall_seconds"]
        - sum(epochs)
        for before, trial, epochs in zip(done, done[1:], epoch_seconds[1:], strict=False)
    ]
    return {"side": "B sweeper worker", "wall": wall, "trials": len(done), "epoch_seconds": epoch_seconds[0],
            "all_epochs_seconds": sum(map(sum, epoch_seconds)), "val_acc": done[0].user_attrs["history"]["val_acc"][-1],
            "later_trials_beyond_epochs": beyond_epochs}  # fmt: skip


def tomllib_load(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 epochs on 100 images instead of 30 on the whole subset (proves the script runs)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of A, then B once per trial count")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 2 quick, 30 full)")
    parser.add_argument(
        "--trials", type=int, nargs="+", default=[1], help="trials per worker run (B), one or two counts"
    )
    parser.add_argument("--trials-per-child", type=int, help="override the study's trials_per_child for B")
    args = parser.parse_args()
    epochs, images = (2, 100) if args.quick else (30, 0)
    epochs = args.epochs or epochs
    folder = data_dir()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            runs.append(_plain(folder, epochs, images))
            for count in args.trials:
                runs.append(_worker(folder, epochs, images, Path(tmp), len(runs), count, args.trials_per_child))
            print(
                " | ".join(
                    f"{run['side']} x{run.get('trials', 1)} {run['wall']:.1f}s" for run in runs[-1 - len(args.trials) :]
                ),
                flush=True,
            )
    rows = []
    for run in runs:
        steady = median(run["epoch_seconds"][1:])
        trials, epochs_total = run.get("trials", 1), run.get("all_epochs_seconds", sum(run["epoch_seconds"]))
        rows.append({"side": run["side"], "trials": trials, "wall s": run["wall"], "epochs s": epochs_total,
                     "steady epoch s": steady, "fixed overhead s/trial": (run["wall"] - epochs_total) / trials,
                     "later trials: s beyond epochs": median(run.get("later_trials_beyond_epochs", [])),
                     "final val_acc": run["val_acc"]})  # fmt: skip
    a = [r for r in rows if r["side"].startswith("A")]
    b = [r for r in rows if r["side"].startswith("B")]
    throughput_ratio = median([r["steady epoch s"] for r in a]) / median([r["steady epoch s"] for r in b])
    most = max(args.trials)
    fixed = {n: median([r["wall s"] - r["epochs s"] for r in b if r["trials"] == n]) for n in args.trials}
    overhead_b = fixed[most] / most
    overhead_a = median([r["fixed overhead s/trial"] for r in a])
    thirty_epoch_trial = 30 * median([r["steady epoch s"] for r in b])
    trials_per_child = (
        args.trials_per_child
        or tomllib_load(ROOT / "studies" / "cifar10-regularization.toml")["fleet"]["trials_per_child"]
    )
    summary = {
        "data": str(folder), "epochs": epochs, "train_images": images or "all", "worker_trials": args.trials,
        "trials_per_child": trials_per_child,
        "throughput_ratio": throughput_ratio,
        "fixed_overhead_seconds": {"plain": overhead_a, "worker": overhead_b, "worker_minus_plain": overhead_b - overhead_a},
        "worker_overhead_vs_30_epoch_trial": overhead_b / thirty_epoch_trial,
        "extra_overhead_vs_30_epoch_trial": (overhead_b - overhead_a) / thirty_epoch_trial,
        "goal": "throughput ratio >= 0.97; per-trial overhead <= 2% of a 30-epoch trial on the real subset",
    }  # fmt: skip
    later = [seconds for run in runs for seconds in run.get("later_trials_beyond_epochs", [])]
    if later:
        summary.update(
            {
                "later_trial_seconds_measured": median(later),
                "later_trial_measured_vs_30_epoch_trial": median(later) / thirty_epoch_trial,
            }
        )
    if len(fixed) > 1:
        fewest = min(args.trials)
        marginal = (fixed[most] - fixed[fewest]) / (most - fewest)
        startup = fixed[fewest] - marginal * fewest
        summary.update({
            "worker_startup_seconds": startup, "worker_marginal_seconds_per_trial": marginal,
            "marginal_vs_30_epoch_trial": marginal / thirty_epoch_trial,
            "per_trial_over_a_childs_life_vs_30_epoch_trial": (marginal + startup / trials_per_child) / thirty_epoch_trial,
        })  # fmt: skip
    counts = "-".join(map(str, args.trials))
    mode = "quick" if args.quick else f"full-{epochs}-epochs" + (f"-{counts}-trials" if args.trials != [1] else "")
    mode += f"-{args.trials_per_child}-per-child" if args.trials_per_child else ""
    write("trainer_overhead", mode, rows, summary)


if __name__ == "__main__":
    main()
