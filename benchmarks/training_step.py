"""Benchmark 8: what packaging the training step costs: steps per execution, and where the data lives.

Chooses `[training] steps_per_execution`'s default per backend and shows what keeping the data on
the device (`SWEEPER_DATA_ON_DEVICE`, JAX) buys. For each backend, in a process of its own (Keras
reads its backend once), the tutorial's CNN (batch normalization on, dropout 0.3, learning rate
1e-3, batch 32) trains `--epochs` epochs under each setting; the settings take turns, their order
rotated each round, `--rounds` rounds, after one untimed model has warmed the process up. A
setting is a number of steps per execution and, on JAX, the data on the host (Keras copies each
batch) or on the device (copied once, gathered there).
The figure is end to end per warm epoch: images trained / the epoch's wall time (the epochs after
the first, which compiles), a median over a setting's warm epochs, and its ratio to one step per
execution from host data measured in the same round (median and range over rounds).

    python -m benchmarks.training_step [--quick] [--backends jax tensorflow] [--steps 1 4 16] [--rounds R]
                                       [--epochs E] [--images N] [--label NAME]

On the GPU machine (no TensorFlow), after `benchmarks/gpu_check pack` carried the wheels:
`PYTHONPATH=/tmp/site python3 -m benchmarks.training_step --backends jax --label gpu`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import data_dir, write

STEPS = (1, 4, 16)
PARAMS = {"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}
BATCH = 32


def _settings(backend: str, steps: list[int]) -> list[dict[str, Any]]:
    places = ("host", "device") if backend == "jax" else ("host",)
    return [{"steps_per_execution": count, "data": place} for place in places for count in steps]


def _child(backend: str, steps: list[int], rounds: int, epochs: int, images: int) -> list[dict[str, Any]]:
    """Runs in the backend's own process: every setting's epochs, round by round."""
    import keras

    from benchmarks.plain_fit import EpochTimer
    from sweeper.studyfile import Training
    from sweeper.training import data, device_data
    from sweeper.training.model import build_model

    raw = data.load_raw(data_dir(), data.default_cache_dir())
    dataset = data.prepare_arrays(raw[0], raw[1], Training(max_train_images=images))
    resident = device_data.Resident.copy(dataset) if backend == "jax" else None
    settings, rows = _settings(backend, steps), []
    # Untimed: a process's first model trains its first epochs slower whatever its setting (TensorFlow's
    # were twice as slow for all of them), which would flatter whichever setting a round starts with.
    build_model(**PARAMS).fit(dataset.x_train, dataset.y_train, batch_size=BATCH, epochs=2, verbose=0)
    keras.backend.clear_session()
    for round_index in range(rounds):
        shift = round_index % len(settings)
        for setting in settings[shift:] + settings[:shift]:
            keras.utils.set_random_seed(round_index)
            model = build_model(**PARAMS, steps_per_execution=setting["steps_per_execution"])
            if setting["data"] == "device" and resident is not None:
                inputs: dict[str, Any] = {"x": resident.training(BATCH), "shuffle": False}
            else:
                inputs = {"x": dataset.x_train, "y": dataset.y_train, "batch_size": BATCH}
            timer = EpochTimer()
            model.fit(**inputs, epochs=epochs, callbacks=[timer], verbose=0)
            seconds = timer.seconds
            warm = statistics.median(seconds[1:])
            rows.append({"backend": backend, "round": round_index, **setting, "first_epoch_s": seconds[0],
                         "warm_epoch_s": warm, "images_per_s": len(dataset.x_train) / warm})  # fmt: skip
            keras.backend.clear_session()
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backend and setting: median images/s, and the ratio to 1 step from host data in the same round."""
    summary: dict[str, Any] = {}
    for backend in sorted({row["backend"] for row in rows}):
        mine = [row for row in rows if row["backend"] == backend]
        base = {row["round"]: row["images_per_s"] for row in mine
                if row["steps_per_execution"] == 1 and row["data"] == "host"}  # fmt: skip
        for count, place in sorted({(row["steps_per_execution"], row["data"]) for row in mine}, key=lambda s: s[::-1]):
            same = [row for row in mine if (row["steps_per_execution"], row["data"]) == (count, place)]
            ratios = sorted(row["images_per_s"] / base[row["round"]] for row in same)
            name = f"{backend} steps={count} data={place}"
            summary[name] = {
                "images_per_s": statistics.median(row["images_per_s"] for row in same),
                "ratio_median": statistics.median(ratios),
                "ratio_range": [ratios[0], ratios[-1]],
            }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 steps, 2 epochs on 96 images, 1 round (the test)")
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow"], choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="steps per execution to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--label", default="full", help="the results file's suffix")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.epochs, args.images, args.label = [1, 4], 1, 2, 96, "quick"
    if 1 not in args.steps:
        parser.error("--steps must include 1, the figures' baseline")
    if args.child:
        print(json.dumps(_child(args.child, args.steps, args.rounds, args.epochs, args.images)))
        return 0
    rows: list[dict[str, Any]] = []
    for backend in args.backends:
        command = [sys.executable, "-m", "benchmarks.training_step", "--child", backend, "--rounds", str(args.rounds),
                   "--epochs", str(args.epochs), "--images", str(args.images), "--steps", *map(str, args.steps)]  # fmt: skip
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    write("training_step", args.label, rows, _summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
