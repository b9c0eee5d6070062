"""The training data on the accelerator once per child, each batch gathered there (JAX).

Given host arrays, Keras gathers every batch on the host and copies it to the device as it
trains: on a GPU, 114 gathers and transfers an epoch for the prepared subset, started one batch
ahead, so they hide behind a step only while the host keeps up with the packed workers. Given JAX
arrays, its array adapter turns them back into NumPy (Keras 3.15's `convert_to_sliceable`), so
the data cannot simply be handed over on the device. Here a child copies its dataset to the
device once (`Resident`) and each trial reads it through `EpochBatches`, a `PyDataset` whose
batches are gathered on the device by one compiled program. The order is the array adapter's
own: one `np.random.permutation` of the training images drawn as each epoch starts, none for
validation; so a trial's curve is the same whichever path its data took.

`SWEEPER_DATA_ON_DEVICE` chooses, per host: `auto` (the default: on when the JAX backend trains
on an accelerator), `1` (on with JAX, also on the CPU) or `0` (off). Other backends read host
arrays (TensorFlow's pipeline already prefetches them to the device).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from sweeper.training.backends import data_on_device_setting
from sweeper.training.prepared import Dataset


def wanted(backend: str) -> bool:
    """Whether a child of this backend keeps its data on the device; only JAX is asked where it trains."""
    setting = data_on_device_setting()
    if backend != "jax" or setting == "0":
        return False
    import jax

    return setting == "1" or jax.default_backend() != "cpu"


@dataclass(frozen=True)
class Resident:
    """A prepared dataset's four arrays, copied to the default device once."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any

    @classmethod
    def copy(cls, dataset: Dataset) -> Resident:
        import jax

        arrays = (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)
        return cls(*(jax.device_put(np.asarray(array)) for array in arrays))

    def training(self, batch_size: int) -> EpochBatches:
        return EpochBatches(self.x_train, self.y_train, batch_size, shuffle=True)

    def validation(self, batch_size: int) -> EpochBatches:
        return EpochBatches(self.x_val, self.y_val, batch_size, shuffle=False)


@functools.cache
def _gather() -> Any:
    import jax

    # One program per batch length (the full batches', the last one's): a batch never leaves the device.
    return jax.jit(lambda x, y, indices: (x[indices], y[indices]))


class EpochBatches(keras.utils.PyDataset):
    """One epoch's batches of device arrays, in a new random order each epoch when shuffled."""

    def __init__(self, x: Any, y: Any, batch_size: int, *, shuffle: bool) -> None:
        super().__init__()  # no workers: the gather is on the device, there is nothing to overlap
        self._x, self._y, self._batch_size, self._shuffle = x, y, batch_size, shuffle
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        return -(-len(self._x) // self._batch_size)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if self._order is None:  # drawn as the epoch starts, where the array adapter draws its own
            count = len(self._x)
            self._order = (np.random.permutation(count) if self._shuffle else np.arange(count)).astype(np.int32)
        indices = self._order[index * self._batch_size : (index + 1) * self._batch_size]
        return _gather()(self._x, self._y, indices)

    def on_epoch_end(self) -> None:
        self._order = None
