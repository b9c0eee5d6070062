"""A prepared dataset on disk: the .npy files a worker writes once and every trial memory-maps.

The training child's only view of the data, so it imports NumPy alone: preparing (the study
file, CIFAR-10's pickles, a `[data]` loader) is the worker's, in `sweeper.training.data`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAYS = ("x_train", "y_train", "x_val", "y_val", "mean", "std")
USER_DATA_PREFIX = "user-data-"
"""A worker's own folder of a `[data]` loader's arrays (`data.discard` removes only these)."""


def default_cache_dir() -> Path:
    """Where a host's workers keep what they prepare once: the data, the compiled graphs."""
    return Path(os.environ.get("SWEEPER_CACHE_DIR") or Path.home() / ".cache" / "sweeper")


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    """Per-channel statistics of the training images, applied to every split."""


def save_arrays(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """A loader's arrays in `open_prepared`'s layout (no per-channel statistics: the loader's data is as given)."""
    for name in ARRAYS:
        np.save(target / f"{name}.npy", arrays.get(name, np.zeros(0, np.float32)))


def open_prepared(folder: Path) -> Dataset:
    """Memory-map a prepared dataset: every trial on a host shares one copy in the page cache."""
    return Dataset(**{name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS})
