"""The tutorial's CNN, with the trial's dropout rate, batch-normalization flag and learning rate.

Three blocks of [Conv2D ×2, MaxPool2D] with 32, 64 and 128 filters, then Dense(256) and a
10-way softmax. With batch normalization every Conv2D and the Dense(256) is followed by
BatchNormalization then ReLU; without it the layers carry the ReLU themselves. With dropout, a
Dropout(rate) follows each MaxPool2D. Plain Keras 3: it runs on TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

import functools

import keras
from keras import layers

FILTERS = (32, 64, 128)


def _dense_or_conv(layer_factory, batchnorm: bool) -> list[layers.Layer]:
    if batchnorm:
        return [layer_factory(activation=None), layers.BatchNormalization(), layers.Activation("relu")]
    return [layer_factory(activation="relu")]


def build_model(
    dropout: float, batchnorm: bool, learning_rate: float, *, jit_compile: bool | str = "auto"
) -> keras.Model:
    stack: list[layers.Layer] = [keras.Input(shape=(32, 32, 3))]
    for filters in FILTERS:
        for _ in range(2):
            stack += _dense_or_conv(functools.partial(layers.Conv2D, filters, 3, padding="same"), batchnorm)
        stack.append(layers.MaxPool2D(2, strides=2, padding="same"))
        if dropout > 0:
            stack.append(layers.Dropout(dropout))
    stack.append(layers.Flatten())
    stack += _dense_or_conv(lambda **kw: layers.Dense(256, **kw), batchnorm)
    stack.append(layers.Dense(10, activation="softmax", dtype="float32"))  # softmax stays float32 under mixed precision

    model = keras.Sequential(stack)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["acc"],
        jit_compile=jit_compile,
    )
    return model
