"""A prepared dataset: saved once in the layout every trial memory-maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeper.training.prepared import ARRAYS, open_prepared, save_arrays


def test_a_loaders_arrays_round_trip_memory_mapped(tmp_path: Path) -> None:
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    save_arrays(tmp_path, {"x_train": x, "y_train": np.array([0, 1]), "x_val": x[:1], "y_val": np.array([1])})
    assert sorted(p.stem for p in tmp_path.glob("*.npy")) == sorted(ARRAYS)
    data = open_prepared(tmp_path)
    assert isinstance(data.x_train, np.memmap) and np.array_equal(data.x_train, x)
    assert data.y_val.tolist() == [1] and data.mean.size == 0 and data.std.size == 0  # no statistics: as given
