"""The training child: maps the prepared data once, then fits one model per job it is sent.

Runs in its own process (`trainer_process` starts it) and never touches the database:
after every epoch it sends the metrics up the pipe and waits for the worker's reply. The
tutorial's CNN is compiled once per architecture in a child and re-initialized in place for each
later trial (`model.reinitialize`); each trial records how many times the backend compiled
(`compilations`, where the backend reports it) and whether the compiled model was reused. On an
accelerator the data is copied to the device once per child (`device_data`), not batch by batch.
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

from sweeper.training import backends, device_data
from sweeper.training import model as tutorial
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


_COMPILED: dict[tuple, keras.Model] = {}
"""This child's compiled tutorial CNNs, by architecture and compile settings."""


def train(
    job: Job, dataset: Dataset, conn: multiprocessing.connection.Connection, resident: device_data.Resident | None
) -> dict[str, Any]:
    backends.check_gpu_seen(backends.describe_device()["device"], keras.backend.backend())
    keras.utils.set_random_seed(job.seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if job.mixed_precision else "float32")
    compilations = backends.CompilationCounter()
    model, reused = _model(job, dataset)
    keras.utils.set_random_seed(job.seed)  # the data's shuffles start alike whatever building the model drew
    if job.run_eagerly:  # else the model keeps what its builder compiled it with
        model.run_eagerly = True
    reporter = EpochReporter(conn)
    if resident is None:
        inputs: dict[str, Any] = {"x": dataset.x_train, "y": dataset.y_train, "batch_size": job.batch_size,
                                  "validation_data": (dataset.x_val, dataset.y_val)}  # fmt: skip
    else:  # the batches shuffle themselves, in the order the host arrays' would
        inputs = {"x": resident.training(job.batch_size), "shuffle": False,
                  "validation_data": resident.validation(job.batch_size)}  # fmt: skip
    model.fit(**inputs, epochs=job.epochs, callbacks=[reporter], verbose=0)
    if job.model_path and not reporter.stopped and reporter.best_weights is not None:
        model.set_weights(reporter.best_weights)
        (model if job.builder is not None else tutorial.plain_twin(model, job.params)).save(job.model_path)
    images = len(dataset.x_train) * reporter.epochs_run
    return {
        **backends.describe_device(),
        "mixed_precision": job.mixed_precision,
        "run_eagerly": model.run_eagerly,
        "data_on_device": resident is not None,
        "steps_per_execution": model.steps_per_execution,
        "train_images": len(dataset.x_train),
        "val_images": len(dataset.x_val),
        "train_seconds": reporter.seconds,
        "images_per_second": images / reporter.seconds if reporter.seconds else 0.0,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "child_peak_mb": peak_memory_mb(),
        "model_reused": reused,
        "compilations": compilations.stop(),
    }


def _model(job: Job, dataset: Dataset) -> tuple[keras.Model, bool]:
    """The study's `[model]` builder's model, else the tutorial's CNN; and whether it was compiled before.

    The CNN is built from the trial's seed either way, so its initial weights, dropout seeds and
    the data's shuffles are the ones a new child would draw; a model compiled for the same
    architecture in this child takes them in place of a new compilation. PyTorch compiles nothing
    (its dropout takes no variable rate), so it builds plain layers each trial, as every backend
    does with `SWEEPER_COMPILE_ONCE=0` (sweeper 0.1's way: the GPU check's "before" side).
    """
    if job.builder is not None:
        from sweeper.training import user_code

        classes = user_code.num_classes(dataset.y_train, dataset.y_val)
        return user_code.build(job.builder, Path(job.code_dir or "."), job.params, dataset.x_train, classes), False
    params = job.params
    steps = backends.steps_per_execution(job.steps_per_execution, keras.backend.backend())
    if keras.backend.backend() == "torch" or os.environ.get("SWEEPER_COMPILE_ONCE") == "0":
        return tutorial.build_model(**params, jit_compile=job.jit_compile, steps_per_execution=steps), False
    fresh = tutorial.network(params["dropout"], params["batchnorm"], variable_rates=True)
    key = (*tutorial.architecture(params), job.jit_compile, job.mixed_precision, job.run_eagerly, steps)
    compiled = _COMPILED.get(key)
    if compiled is None:
        _COMPILED[key] = tutorial.compile_for_training(fresh, params["learning_rate"], job.jit_compile, steps)
        # Built now, as a reused model is: else `fit` would build it from a first batch of an extra
        # shuffle, and a trial's shuffles would depend on whether its child was warm.
        fresh.evaluate(dataset.x_val, dataset.y_val, batch_size=job.batch_size, verbose=0)
        return fresh, False
    tutorial.reinitialize(compiled, fresh, params["learning_rate"])
    return compiled, True


def peak_memory_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def serve(conn: multiprocessing.connection.Connection, data_folder: Path) -> None:
    """Train the jobs sent down `conn` until told to exit; report any failure as text."""
    try:
        dataset = open_prepared(data_folder)
        resident = None
        if device_data.wanted(keras.backend.backend()):
            resident = device_data.Resident.copy(dataset)
        while True:
            command = conn.recv()
            if not isinstance(command, Train):
                return  # Reply.EXIT
            conn.send(Done(train(command.job, dataset, conn, resident)))
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
