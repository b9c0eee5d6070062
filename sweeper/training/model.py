"""The tutorial's CNN, with the trial's dropout rate, batch-normalization flag and learning rate.

Three blocks of [Conv2D ×2, MaxPool2D] with 32, 64 and 128 filters, then Dense(256) and a
10-way softmax. With batch normalization every Conv2D and the Dense(256) is followed by
BatchNormalization then ReLU; without it the layers carry the ReLU themselves. With dropout, a
Dropout(rate) follows each MaxPool2D. Plain Keras 3: it runs on TensorFlow, JAX or PyTorch.

Compiling the training step costs more than several epochs on a GPU, and only the architecture
(dropout or none, batch normalization on or off) changes its graph. So the training child builds
the network with `variable_rates`: its dropout layers read their rate from a variable
(`RateDropout`), as the optimizer reads its learning rate, and one compiled model serves every
trial of an architecture, re-initialized in place from each trial's seed (`reinitialize`). What
is saved is `plain_twin`: the same weights in plain Keras layers, loadable without sweeper.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
from keras import layers

FILTERS = (32, 64, 128)


@keras.saving.register_keras_serializable(package="sweeper")
class RateDropout(layers.Layer):
    """Dropout whose rate is a (non-trainable) variable, so changing it needs no new compilation."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(rate), trainable=False, name="rate"
        )
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        # Written out, because keras.random.dropout branches on the rate's value in Python.
        rate = keras.ops.cast(self.rate, inputs.dtype)
        kept = keras.random.uniform(keras.ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype) >= rate
        return keras.ops.where(kept, inputs / (1 - rate), keras.ops.zeros_like(inputs))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": float(keras.ops.convert_to_numpy(self.rate))}


def _dense_or_conv(layer_factory, batchnorm: bool) -> list[layers.Layer]:
    if batchnorm:
        return [layer_factory(activation=None), layers.BatchNormalization(), layers.Activation("relu")]
    return [layer_factory(activation="relu")]


def network(dropout: float, batchnorm: bool, *, variable_rates: bool = False) -> keras.Sequential:
    """The layers, built and initialized (from Keras' seed), not compiled."""
    stack: list[layers.Layer] = [keras.Input(shape=(32, 32, 3))]
    for filters in FILTERS:
        for _ in range(2):
            stack += _dense_or_conv(functools.partial(layers.Conv2D, filters, 3, padding="same"), batchnorm)
        stack.append(layers.MaxPool2D(2, strides=2, padding="same"))
        if dropout > 0:
            stack.append(RateDropout(dropout) if variable_rates else layers.Dropout(dropout))
    stack.append(layers.Flatten())
    stack += _dense_or_conv(lambda **kw: layers.Dense(256, **kw), batchnorm)
    stack.append(layers.Dense(10, activation="softmax", dtype="float32"))  # softmax stays float32 under mixed precision
    return keras.Sequential(stack)


def compile_for_training(
    model: keras.Model, learning_rate: float, jit_compile: bool | str = "auto", steps_per_execution: int = 1
) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["acc"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def build_model(
    dropout: float,
    batchnorm: bool,
    learning_rate: float,
    *,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> keras.Model:
    """The tutorial's CNN in plain Keras layers, compiled: what the tutorial's own script builds."""
    return compile_for_training(network(dropout, batchnorm), learning_rate, jit_compile, steps_per_execution)


def architecture(params: dict[str, Any]) -> tuple[bool, bool]:
    """What shapes the compiled graph: dropout layers or none, batch normalization or not."""
    return params["dropout"] > 0, bool(params["batchnorm"])


def reinitialize(compiled: keras.Model, fresh: keras.Model, learning_rate: float) -> None:
    """Make `compiled` what compiling `fresh` would have given, without compiling again.

    `fresh` is the same architecture just built from the trial's seed: its weights, dropout rates
    and dropout seeds are copied in, layer by layer; the optimizer's moments and step count go back
    to zero and it takes the trial's learning rate. A trial so trains as in a new child.
    """
    for target, source in zip(compiled.layers, fresh.layers, strict=True):
        for variable, value in zip(target.variables, source.variables, strict=True):
            variable.assign(value)
    optimizer = compiled.optimizer
    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, dtype=variable.dtype))
    optimizer.learning_rate = learning_rate


def plain_twin(model: keras.Model, params: dict[str, Any]) -> keras.Model:
    """`model` in `build_model`'s plain layers (`RateDropout` becomes `Dropout`): its weights and
    its optimizer's state, as `model.save` would have kept them. A model already in plain layers
    (PyTorch, `SWEEPER_COMPILE_ONCE=0`) is its own twin."""
    if not any(isinstance(layer, RateDropout) for layer in model.layers):
        return model
    twin = build_model(params["dropout"], params["batchnorm"], params["learning_rate"])
    for target, source in zip(twin.layers, model.layers, strict=True):
        if target.weights:
            target.set_weights(source.get_weights())
    twin.optimizer.build(twin.trainable_variables)
    for variable, value in zip(twin.optimizer.variables, model.optimizer.variables, strict=True):
        variable.assign(value)
    return twin
