"""Benchmark 4, part 1: a tabular benchmark of real learning curves of the tutorial's CNN.

Trains every configuration of a grid (batch normalization × dropout × learning rate) on the real
CIFAR-10 subset for a fixed number of epochs and records each epoch's val_acc, acc, loss and
val_loss. One JSON line per configuration is appended to the table as soon as it is trained,
so the build resumes where it stopped (`--minutes` bounds one sitting). Plain Keras 3: on a
GPU machine it runs with KERAS_BACKEND=jax.

    python -m benchmarks.build_table [--table PATH] [--epochs 20] [--minutes M] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import FIXTURE, ROOT, data_dir
from sweeper.studyfile import Training
from sweeper.training import data

TABLE = ROOT / "benchmarks" / "data" / "cifar10-subset-curves.jsonl"
DROPOUTS = (0.2, 0.3, 0.4, 0.5)
LEARNING_RATES = tuple(float(f"{v:.3g}") for v in np.logspace(-5, -2, 6))  # 1e-5 ... 1e-2, evenly in log
SEED = 777


def grid(quick: bool) -> list[dict]:
    if quick:
        return [{"batchnorm": b, "dropout": 0.2, "learning_rate": 1e-3} for b in (False, True)]
    return [
        {"batchnorm": b, "dropout": d, "learning_rate": lr}
        for b in (False, True)
        for d in DROPOUTS
        for lr in LEARNING_RATES
    ]


def _key(config: dict) -> tuple:
    return (config["batchnorm"], config["dropout"], config["learning_rate"])


def done(table: Path) -> set[tuple]:
    if not table.exists():
        return set()
    return {_key(json.loads(line)["config"]) for line in table.read_text().splitlines() if line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--minutes", type=float, default=float("inf"), help="stop starting new configurations after this long"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 configurations, 2 epochs, on 92 images of the committed slice (a smoke check)",
    )
    args = parser.parse_args()
    todo = [config for config in grid(args.quick) if _key(config) not in done(args.table)]
    if todo:
        _train(todo, args)
    print(f"{len(done(args.table))}/{len(grid(args.quick))} configurations in {args.table}")


def _train(todo: list[dict], args: argparse.Namespace) -> None:
    """Append each configuration's curves to the table as soon as it is trained."""
    import keras  # only when there is something to train: a finished table answers at once

    from sweeper.training.model import build_model

    folder = FIXTURE if args.quick else data_dir()
    epochs = 2 if args.quick else args.epochs
    x_train, y_train, _, _ = data.load_raw(folder, Path(os.environ.get("TMPDIR", "/tmp")))
    dataset = data.prepare_arrays(x_train, y_train, Training(max_train_images=92 if args.quick else None))
    deadline = time.monotonic() + args.minutes * 60
    args.table.parent.mkdir(parents=True, exist_ok=True)
    for config in todo:
        if time.monotonic() > deadline:
            break
        keras.utils.set_random_seed(SEED)
        model = build_model(config["dropout"], config["batchnorm"], config["learning_rate"], jit_compile=False)
        started = time.perf_counter()
        history = model.fit(dataset.x_train, dataset.y_train, batch_size=32, epochs=epochs,
                            validation_data=(dataset.x_val, dataset.y_val), verbose=0).history  # fmt: skip
        line = {
            "config": config, "epochs": epochs, "seconds": time.perf_counter() - started, "seed": SEED,
            "data": folder.name if args.quick else "cifar10-subset", "train_images": len(dataset.x_train),
            "backend": keras.backend.backend(),
            **{key: [float(v) for v in history[key]] for key in ("acc", "loss", "val_acc", "val_loss")},
        }  # fmt: skip
        with args.table.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{config} best val_acc {max(line['val_acc']):.4f} in {line['seconds']:.0f}s", flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
