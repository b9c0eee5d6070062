"""The GPU check: real sweeps with 1, 2 and 4 workers packed on one GPU, measured in images/s.

Two parts, because the GPU machine has no internet and no TensorFlow:

    python -m benchmarks.gpu_check pack            # here: wheels + the CIFAR-10 subset into .gpu_check/
    python -m benchmarks.gpu_check run --out DIR   # there: the sweeps, then DIR/gpu_check.json

`pack` prints the exact command to run on the GPU machine. `run --cpu` does the same sweeps on a
CPU with 92 images and one trial per worker: the test of this script. Each packing is one `sweeper sweep` of
`studies/gpu-check.toml` on SQLite with `--gpu require` (`--gpu none` with --cpu), K workers
sharing GPU 0 (`--workers-per-gpu K`), about two trials per worker; the result says, per packing:
images/s while the workers train together (each worker's median epoch after its first, which
holds the compile, summed over workers), images/s over the sweep's whole wall time, epoch
seconds, the GPU memory each worker peaked at, the devices the trials recorded, whether every
trial ran on the GPU, and the GPU's utilization as nvidia-smi sampled it.
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


def run(out: Path, *, cpu: bool, backend: str, packings: list[int], epochs: int | None, mixed_precision: bool) -> dict:
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
        "SWEEPER_DATA_DIR": str(data),
        "SWEEPER_CACHE_DIR": str(work / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    result: dict[str, Any] = {
        "backend": backend,
        "cpu": cpu,
        "data": str(data),
        "training": spec["training"],
        "packings": [],
    }
    result["gpu"] = _nvidia_smi("name,memory.total,driver_version") if not cpu else None
    for workers in packings:
        result["packings"].append(_sweep(work, out, spec, env, backend, workers, cpu))
        (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    result["ok"] = all(
        p["exact_budget"] and p["exit_code"] == 0 and p["all_on_expected_device"] for p in result["packings"]
    )
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    _print_table(result)
    return result


def _sweep(work: Path, out: Path, spec: dict, env: dict, backend: str, workers: int, cpu: bool) -> dict[str, Any]:
    import tomli_w

    name = f"gpu-check-{workers}"
    budget = (1 if cpu else 2) * workers  # on a GPU the second trial per worker shows the warm rate
    study = dict(spec, study={**spec["study"], "name": name, "budget": budget})
    study_path = work / f"{name}.toml"
    study_path.write_text(tomli_w.dumps(study))
    url = f"sqlite:///{work / name}.db"
    gpu = ["--gpu", "none"] if cpu else ["--gpu", "require", "--workers-per-gpu", str(workers)]
    command = [sys.executable, "-m", "sweeper", "sweep", str(study_path), "--workers", str(workers),
               "--storage", url, "--backend", backend, *gpu]  # fmt: skip
    sampler = _Sampler(enabled=not cpu)
    started = time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.run(command, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, timeout=900).returncode
    wall = time.monotonic() - started
    sampler.stop()
    return {
        "workers": workers,
        "exit_code": code,
        "wall_seconds": wall,
        **_measure(url, name, budget, wall, cpu),
        **sampler.summary(),
    }


def _measure(url: str, name: str, budget: int, wall: float, cpu: bool) -> dict[str, Any]:
    import optuna

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    by_worker: dict[str, list] = {}
    for trial in finished:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial)
    steady, first, images = [], [], 0
    rates = []
    for worker_trials in by_worker.values():
        seconds = [s for t in worker_trials for s in t.user_attrs["history"]["epoch_seconds"][1:]]
        if seconds:
            rates.append(worker_trials[0].user_attrs["train_images"] / statistics.median(seconds))
        steady += seconds
    for trial in finished:
        history = trial.user_attrs["history"]["epoch_seconds"]
        first.append(history[0])
        images += trial.user_attrs["train_images"] * len(history)
    devices = sorted({t.user_attrs.get("device", "?") for t in finished})
    return {
        "trials": len(trials),
        "finished": len(finished),
        "exact_budget": len(finished) == budget == len(trials),
        "train_images_per_epoch": finished[0].user_attrs["train_images"] if finished else 0,
        "images_per_second_training": round(sum(rates)),
        "images_per_second_wall": round(images / wall),
        "epoch_seconds_median": statistics.median(steady) if steady else None,
        "first_epoch_seconds_median": statistics.median(first) if first else None,
        "gpu_peak_mb_per_worker": sorted(
            round(max(t.user_attrs.get("gpu_peak_mb", 0) for t in ts)) for ts in by_worker.values()
        ),
        "devices": devices,
        "mixed_precision": sorted({t.user_attrs.get("mixed_precision") for t in finished}),
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
    keys = ("workers", "exit_code", "finished", "images_per_second_training", "images_per_second_wall",
            "epoch_seconds_median", "first_epoch_seconds_median", "gpu_peak_mb_per_worker",
            "gpu_utilization_median", "devices")  # fmt: skip
    for packing in result["packings"]:
        print("  ".join(f"{key}={packing.get(key)}" for key in keys))
    print(f"ok={result['ok']}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pack", help="wheels and data for the GPU machine, into .gpu_check/")
    runner = commands.add_parser("run", help="the sweeps; writes OUT/gpu_check.json")
    runner.add_argument("--out", type=Path, required=True)
    runner.add_argument("--cpu", action="store_true", help="on the CPU, with 92 images (the test)")
    runner.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    runner.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="the packings to measure")
    runner.add_argument("--epochs", type=int, help="override the study file's epochs")
    runner.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()
    if args.command == "pack":
        pack()
        return 0
    result = run(args.out, cpu=args.cpu, backend=args.backend, packings=args.workers, epochs=args.epochs,
                 mixed_precision=args.mixed_precision)  # fmt: skip
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
