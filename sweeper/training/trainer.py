"""The training child: maps the prepared data once, then fits one model per job it is sent.

Runs in its own process (`trainer_process` starts it) and never touches the database:
after every epoch it sends the metrics up the pipe and waits for the worker's reply.
"""

from __future__ import annotations

import gc
import multiprocessing.connection
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import keras

from sweeper.training import backends
from sweeper.training.model import build_model
from sweeper.training.prepared import Dataset, open_prepared
from sweeper.training.protocol import Done, Epoch, Failed, Job, Reply, Train, canonical_metrics


class EpochReporter(keras.callbacks.Callback):
    """Hands each epoch's metrics to the worker and stops training when it says so."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.seconds = 0.0
        self.epochs_run = 0
        self.stopped = False
        self.best_val_acc = float("-inf")
        self.best_weights: list | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._started
        self.seconds += elapsed
        self.epochs_run += 1
        metrics = canonical_metrics(logs or {})
        if metrics.get("val_acc", float("nan")) > self.best_val_acc:  # the epoch the trial's value comes from
            self.best_val_acc, self.best_weights = metrics["val_acc"], self.model.get_weights()
        self.conn.send(Epoch(epoch + 1, elapsed, metrics))
        if self.conn.recv() != Reply.CONTINUE:
            self.model.stop_training = self.stopped = True


def train(job: Job, dataset: Dataset, conn: multiprocessing.connection.Connection) -> dict[str, Any]:
    backends.check_gpu_seen(backends.describe_device()["device"], keras.backend.backend())
    keras.utils.set_random_seed(job.seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if job.mixed_precision else "float32")
    model = _model(job, dataset)
    if job.run_eagerly:  # else the model keeps what its builder compiled it with
        model.run_eagerly = True
    reporter = EpochReporter(conn)
    model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=job.batch_size,
        epochs=job.epochs,
        validation_data=(dataset.x_val, dataset.y_val),
        callbacks=[reporter],
        verbose=0,
    )
    if job.model_path and not reporter.stopped and reporter.best_weights is not None:
        model.set_weights(reporter.best_weights)
        model.save(job.model_path)
    images = len(dataset.x_train) * reporter.epochs_run
    return {
        **backends.describe_device(),
        "mixed_precision": job.mixed_precision,
        "run_eagerly": model.run_eagerly,
        "train_images": len(dataset.x_train),
        "val_images": len(dataset.x_val),
        "train_seconds": reporter.seconds,
        "images_per_second": images / reporter.seconds if reporter.seconds else 0.0,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "child_peak_mb": peak_memory_mb(),
    }


def _model(job: Job, dataset: Dataset) -> keras.Model:
    """The study's `[model]` builder's model, else the tutorial's CNN."""
    if job.builder is None:
        return build_model(**job.params, jit_compile=job.jit_compile)
    from sweeper.training import user_code

    classes = user_code.num_classes(dataset.y_train, dataset.y_val)
    return user_code.build(job.builder, Path(job.code_dir or "."), job.params, dataset.x_train, classes)


def peak_memory_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def serve(conn: multiprocessing.connection.Connection, data_folder: Path) -> None:
    """Train the jobs sent down `conn` until told to exit; report any failure as text."""
    try:
        dataset = open_prepared(data_folder)
        while True:
            command = conn.recv()
            if not isinstance(command, Train):
                return  # Reply.EXIT
            conn.send(Done(train(command.job, dataset, conn)))
            keras.backend.clear_session()
            gc.collect()
    except (EOFError, BrokenPipeError):
        return  # the worker is gone or gave up on this trial
    except Exception as exc:  # the trial's failure, reported as text; this process is then spent
        try:
            conn.send(Failed(f"{type(exc).__name__}: {exc}"))
        except (BrokenPipeError, OSError):
            pass
        raise SystemExit(1) from None
