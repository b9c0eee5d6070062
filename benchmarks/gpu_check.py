"""The GPU check: real sweeps with 1, 2, 4 and 8 workers packed on one GPU, end to end.

Two parts, because the GPU machine has no internet and no TensorFlow:

    python -m benchmarks.gpu_check pack            # here: wheels + the CIFAR-10 subset into .gpu_check/
    python -m benchmarks.gpu_check run --out DIR   # there: the sweeps, then DIR/gpu_check.json

`pack` prints the exact command to run on the GPU machine. `run --cpu` does the same on a CPU
with 92 images and 2 epochs: the test of this script, and the CPU's own figures. Each packing
K is one `sweeper sweep` of `studies/gpu-check.toml` (the real space, 30-epoch trials, no
pruning) on SQLite with `--gpu require` (`--gpu none` with --cpu), K workers sharing GPU 0,
`--trials-per-worker` trials each. Before each sweep, the reference runs: the tutorial's CNN
in one plain Keras `fit` (`benchmarks/plain_fit.py`, `jit_compile="auto"`, Keras' default) in
one process on the same device, backend, batch size, data and epochs.

The headline, per packing and for the reference, is **end to end**: every image trained in every
epoch of every trial over the whole wall time (the sweep command's, start-up, data preparation
and compilation included). Also per packing: the per-trial fixed cost (a trial's first epoch
minus its median later epoch: compilation and set-up), split into each worker's first trial of an
architecture and its later ones, and the gap between a worker's trials (from their recorded
timestamps); the programs each trial compiled (JAX reports them); the sum over workers of
their median-epoch rate (how fast they train once warm, not a throughput); GPU utilization.
`--before-after` runs each packing twice, alternating: as sweeper 0.1 did, compiling every trial
anew from data copied batch by batch (`SWEEPER_COMPILE_ONCE=0`, no compilation cache,
`SWEEPER_DATA_ON_DEVICE=0`), then as now.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / ".gpu_check"
STUDY = ROOT / "studies" / "gpu-check.toml"
# What the worker imports that the GPU machine's image lacks (its package list: the device tool's
# KINDS.md). Everything else it needs (numpy, scikit-learn, JAX, rich, h5py, ...) is there already.
MISSING_THERE = (
    "keras", "namex", "optree", "optuna", "alembic", "mako", "colorlog", "sqlalchemy", "greenlet",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "tomli-w",
)  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack() -> None:
    """Wheels for Python 3.12 x86-64 at the versions installed here, the project, and the data."""
    wheels = PACK / "wheels"
    shutil.rmtree(PACK, ignore_errors=True)
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in MISSING_THERE]
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         *platforms, "-d", str(wheels), *pinned],
        check=True,
    )  # fmt: skip
    source = _data_source()
    shutil.copytree(source, PACK / "data" / source.name)
    size = sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file()) / 2**20
    print(f"packed {len(list(wheels.iterdir()))} wheels and {source} into {PACK} ({size:.0f} MiB)")
    print("on the GPU machine, from the repository root (carry .gpu_check):")
    print(
        "  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu_check/wheels/*.whl"
        " && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check run --out $OUT"
    )


def _data_source() -> Path:
    from benchmarks.common import data_dir

    return data_dir()


def run(
    out: Path, *, cpu: bool, backend: str, packings: list[int], epochs: int | None, mixed_precision: bool,
    trials_per_worker: int, before_after: bool,
) -> dict:  # fmt: skip
    packed_data = PACK / "data" / "cifar-10-batches-py"
    given = os.environ.get("SWEEPER_DATA_DIR")
    data = Path(given) if given else packed_data if packed_data.is_dir() else _data_source()
    spec = tomllib.loads(STUDY.read_text())
    if cpu:  # 92 images: 64 to train on, two whole batches, so XLA compiles one training step, not two
        spec["training"].update(epochs=2, max_train_images=92)
    if epochs:
        spec["training"]["epochs"] = epochs
    spec["training"]["mixed_precision"] = mixed_precision
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "SWEEPER_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
    }
    result: dict[str, Any] = {
        "backend": backend,
        "cpu": cpu,
        "data": str(data),
        "training": spec["training"],
        "trials_per_worker": trials_per_worker,
        "gpu": _nvidia_smi("name,memory.total,driver_version") if not cpu else None,
        "reference": [],
        "packings": [],
    }
    as_in_0_1 = {"SWEEPER_COMPILE_ONCE": "0", "SWEEPER_COMPILE_CACHE_DIR": "off", "SWEEPER_DATA_ON_DEVICE": "0"}
    sides = (("before", as_in_0_1), ("after", {})) if (
        before_after
    ) else (("now", {}),)  # fmt: skip
    for workers in packings:
        result["reference"].append(_plain_fit(work, spec, env, data))
        for side, overrides in sides:
            sweep = _sweep(work, out, spec, {**env, **overrides}, backend, workers, cpu, trials_per_worker, side)
            result["packings"].append(sweep)
            (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    result["reference_images_per_second_end_to_end"] = statistics.median(
        r["images_per_second_end_to_end"] for r in result["reference"]
    )
    result["ok"] = all(
        p["exact_budget"] and p["exit_code"] == 0 and p["all_on_expected_device"] for p in result["packings"]
    ) and all(r["exit_code"] == 0 for r in result["reference"])
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    _print_table(result)
    return result


def _plain_fit(work: Path, spec: dict, env: dict, data: Path) -> dict[str, Any]:
    """The reference: the tutorial's CNN in one plain `fit`, one process, timed from its start."""
    training = spec["training"]
    command = [sys.executable, str(ROOT / "benchmarks" / "plain_fit.py"), str(data), str(training["epochs"]),
               str(training.get("max_train_images", 0)), "0.25", "true", "1e-3", "0", "auto"]  # fmt: skip
    started = time.monotonic()
    finished = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    if finished.returncode != 0:
        return {"exit_code": finished.returncode, "images_per_second_end_to_end": 0.0,
                "error": finished.stderr[-1000:]}  # fmt: skip
    fit = json.loads(finished.stdout.strip().splitlines()[-1])
    seconds = fit["epoch_seconds"]
    warm = statistics.median(seconds[1:]) if len(seconds) > 1 else None
    return {
        "exit_code": 0,
        "wall_seconds": wall,
        "images_per_second_end_to_end": fit["train_images"] * len(seconds) / wall,
        "fixed_cost_seconds": seconds[0] - warm if warm is not None else None,
        "warm_epoch_seconds": warm,
        "train_images_per_epoch": fit["train_images"],
    }


def _sweep(
    work: Path, out: Path, spec: dict, env: dict, backend: str, workers: int, cpu: bool, per_worker: int, side: str
) -> dict[str, Any]:
    import tomli_w

    name = f"gpu-check-{workers}-{side}"
    budget = per_worker * workers
    study = dict(spec, study={**spec["study"], "name": name, "budget": budget})
    study_path = work / f"{name}.toml"
    study_path.write_text(tomli_w.dumps(study))
    url = f"sqlite:///{work / name}.db"
    env = {**env, "SWEEPER_CACHE_DIR": str(work / name)}  # each sweep starts on a cold host: data, compiled programs
    gpu = ["--gpu", "none"] if cpu else ["--gpu", "require", "--workers-per-gpu", str(workers)]
    command = [sys.executable, "-m", "sweeper", "sweep", str(study_path), "--workers", str(workers),
               "--storage", url, "--backend", backend, *gpu]  # fmt: skip
    sampler = _Sampler(enabled=not cpu)
    started = time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.run(command, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, timeout=3000).returncode
    wall = time.monotonic() - started
    sampler.stop()
    return {
        "workers": workers,
        "side": side,
        "exit_code": code,
        "wall_seconds": wall,
        **_measure(url, name, budget, wall, cpu),
        **sampler.summary(),
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _measure(url: str, name: str, budget: int, wall: float, cpu: bool) -> dict[str, Any]:
    import optuna

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    finished = sorted((t for t in trials if t.state.name in ("COMPLETE", "PRUNED")), key=lambda t: t.datetime_start)
    by_worker: dict[str, list] = {}
    for trial in finished:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial)
    images = sum(t.user_attrs["train_images"] * len(t.user_attrs["history"]["epoch_seconds"]) for t in finished)
    first_fixed, later_fixed, gaps, warm, rates, later_compiled = [], [], [], [], [], []
    for worker_trials in by_worker.values():
        seen = set()
        for before, trial in zip([None, *worker_trials], worker_trials, strict=False):
            seconds = trial.user_attrs["history"]["epoch_seconds"]
            architecture = (trial.params["dropout"] > 0, trial.params["batchnorm"])
            if len(seconds) > 1:
                fixed = seconds[0] - statistics.median(seconds[1:])
                (later_fixed if architecture in seen else first_fixed).append(fixed)
                warm += seconds[1:]
            if architecture in seen and trial.user_attrs.get("compilations") is not None:
                later_compiled.append(trial.user_attrs["compilations"])
            seen.add(architecture)
            if before is not None:
                gaps.append((trial.datetime_start - before.datetime_complete).total_seconds())
        warm_seconds = [s for t in worker_trials for s in t.user_attrs["history"]["epoch_seconds"][1:]]
        if warm_seconds:
            rates.append(worker_trials[0].user_attrs["train_images"] / statistics.median(warm_seconds))
    devices = sorted({t.user_attrs.get("device", "?") for t in finished})
    warm_epoch = _median(warm)
    later = _median(later_fixed)
    return {
        "trials": len(trials),
        "finished": len(finished),
        "exact_budget": len(finished) == budget == len(trials),
        "train_images_per_epoch": finished[0].user_attrs["train_images"] if finished else 0,
        "images_per_second_end_to_end": images / wall,
        "images_per_second_summed_warm_epochs": sum(rates),
        "warm_epoch_seconds": warm_epoch,
        "fixed_cost_first_trial_seconds": _median(first_fixed),
        "fixed_cost_later_trials_seconds": later,
        "fixed_cost_each_trial_seconds": {"first": first_fixed, "later": later_fixed},
        "later_fixed_cost_in_warm_epochs": later / warm_epoch if later is not None and warm_epoch else None,
        "gap_between_trials_seconds": _median(gaps),
        "compilations_later_trials": later_compiled,
        "gpu_peak_mb_per_worker": sorted(
            round(max(t.user_attrs.get("gpu_peak_mb", 0) for t in ts)) for ts in by_worker.values()
        ),
        "devices": devices,
        "mixed_precision": sorted({t.user_attrs.get("mixed_precision") for t in finished}),
        "data_on_device": sorted({bool(t.user_attrs.get("data_on_device")) for t in finished}),
        "steps_per_execution": sorted({t.user_attrs.get("steps_per_execution", 1) for t in finished}),
        "all_on_expected_device": bool(finished)
        and all((d == "cpu") if cpu else d.startswith("gpu:") for d in devices),
    }


def _nvidia_smi(fields: str) -> list[str] | None:
    try:
        output = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=20).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in output.splitlines() if line.strip()]


class _Sampler:
    """nvidia-smi's utilization and memory of GPU 0 every half second while a sweep runs."""

    def __init__(self, enabled: bool) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if enabled else None
        if self._thread:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            lines = _nvidia_smi("utilization.gpu,memory.used")
            if lines:
                utilization, memory = (float(v) for v in lines[0].split(","))
                self.samples.append((utilization, memory))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        busy = [u for u, _ in self.samples if u > 0]
        return {
            "gpu_utilization_median": statistics.median(busy) if busy else 0.0,
            "gpu_memory_used_mb_max": max(m for _, m in self.samples),
        }


def _print_table(result: dict) -> None:
    reference = result["reference_images_per_second_end_to_end"]
    print(f"reference (plain Keras fit, one process): {reference:,.0f} images/s end to end")
    keys = ("workers", "side", "exit_code", "finished", "images_per_second_end_to_end", "warm_epoch_seconds",
            "fixed_cost_first_trial_seconds", "fixed_cost_later_trials_seconds", "later_fixed_cost_in_warm_epochs",
            "gap_between_trials_seconds", "compilations_later_trials", "images_per_second_summed_warm_epochs",
            "gpu_utilization_median", "devices")  # fmt: skip
    for packing in result["packings"]:
        cells = [f"{key}={_rounded(packing.get(key))}" for key in keys]
        ratio = packing["images_per_second_end_to_end"] / reference if reference else float("nan")
        print("  ".join([*cells, f"x_reference={ratio:.2f}"]))
    print(f"ok={result['ok']}")


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pack", help="wheels and data for the GPU machine, into .gpu_check/")
    runner = commands.add_parser("run", help="the sweeps; writes OUT/gpu_check.json")
    runner.add_argument("--out", type=Path, required=True)
    runner.add_argument("--cpu", action="store_true", help="on the CPU, with 92 images (the test)")
    runner.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    runner.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="the packings to measure")
    runner.add_argument("--trials-per-worker", type=int, default=3, help="trials each worker runs in a packing")
    runner.add_argument(
        "--before-after",
        action="store_true",
        help="each packing also as sweeper 0.1 trained (compiling every trial, host data), alternated",
    )
    runner.add_argument("--epochs", type=int, help="override the study file's epochs")
    runner.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    if args.command == "pack":
        pack()
        return 0
    result = run(args.out, cpu=args.cpu, backend=args.backend, packings=args.workers, epochs=args.epochs,
                 mixed_precision=args.mixed_precision, trials_per_worker=args.trials_per_worker,
                 before_after=args.before_after)  # fmt: skip
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
