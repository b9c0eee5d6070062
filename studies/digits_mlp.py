"""An MLP on scikit-learn's bundled handwritten digits: `studies/digits-mlp.toml`'s model and data.

The smallest "sweep your own model": a study file names `digits_mlp:build` and `digits_mlp:load`,
and sweeper calls them, `build` in every trial's training process, `load` once per worker.
"""

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def build(params: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """Two hidden layers of `units`, dropout between them, Adam at `learning_rate`."""
    model = keras.Sequential([keras.Input(shape=input_shape)])
    for _ in range(params["layers"]):
        model.add(keras.layers.Dense(params["units"], activation=params["activation"]))
        model.add(keras.layers.Dropout(params["dropout"]))
    model.add(keras.layers.Dense(num_classes, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """1,797 8×8 images as 64 pixel values scaled to [0, 1]; 30% held out for validation."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(x, digits.target, test_size=0.3, random_state=0)
    return x_train, y_train, x_val, y_val
