"""The pipe between a worker and its training child: the job, and the messages each side sends.

Dependency-free (no Keras, no Optuna), so both sides import it and the worker never loads a
Keras backend. Worker → child: `Train(job)`, then after each epoch `Reply.CONTINUE` or
`Reply.STOP` (pruning decisions stay with the worker); `Reply.EXIT` between trials ends the child.
Child → worker: an `Epoch` after each epoch, then `Done` with the trial's summary, or `Failed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

METRICS = ("acc", "loss", "val_acc", "val_loss")
"""Keras' names for what each epoch reports (the model is compiled with metrics=["acc"])."""
ACCURACY_NAMES = ("acc", "accuracy", "sparse_categorical_accuracy", "categorical_accuracy")
"""What a user's model may call its accuracy; sweeper records each as `acc` (`val_acc`)."""


def canonical_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """An epoch's logs under sweeper's names (`METRICS`); anything else is left out."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        name = key.removeprefix(prefix)
        name = "acc" if name in ACCURACY_NAMES else name
        if prefix + name in METRICS:
            out.setdefault(prefix + name, float(value))
    return out


@dataclass(frozen=True)
class Job:
    params: dict[str, Any]
    epochs: int
    batch_size: int
    seed: int
    jit_compile: bool | str = "auto"
    mixed_precision: bool = False
    run_eagerly: bool = False
    model_path: str | None = None
    """Where to save the model at its best epoch (by val_acc) if the trial runs to its end."""
    builder: str | None = None
    """The study's `[model] builder` (`module:function`); none: the tutorial's CNN."""
    code_dir: str | None = None
    """The study file's folder, where the builder's module is looked up first."""
    steps_per_execution: int | str = "auto"


@dataclass(frozen=True)
class Train:
    job: Job


class Reply(enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"
    EXIT = "exit"


@dataclass(frozen=True)
class Epoch:
    epoch: int
    """1-based."""
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        return self.metrics.get(name, float("nan"))


@dataclass(frozen=True)
class Done:
    summary: dict[str, Any]
    """What the trial records besides its epochs: backend, device, seconds, images/s, peak memory."""


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class ChildLost:
    """Not sent by the child: the worker's handle reports with it that the child died mid-trial."""

    reason: str


ChildMessage = Epoch | Done | Failed | ChildLost
