"""The tutorial's CNN with every common regularizer as a knob: `studies/cifar10-regularizers.toml`'s model.

The same three blocks of [Conv2D ×2, MaxPool2D] (32, 64, 128 filters), Dense(256) and a softmax
as `sweeper.training.model`, plus L2 weight decay on every kernel, data augmentation (random flips and
shifts, active only while training) and label smoothing in the loss.
"""

import keras
from keras import layers, ops

FILTERS = (32, 64, 128)


def _block(x, layer, batchnorm: bool):
    if batchnorm:
        return layers.Activation("relu")(layers.BatchNormalization()(layer(x)))
    return layers.Activation("relu")(layer(x))


def build(params: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    l2 = keras.regularizers.L2(params["weight_decay"]) if params["weight_decay"] > 0 else None
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if params["augmentation"]:
        x = layers.RandomFlip("horizontal")(x)
        x = layers.RandomTranslation(0.1, 0.1)(x)
    for filters in FILTERS:
        for _ in range(2):
            x = _block(x, layers.Conv2D(filters, 3, padding="same", kernel_regularizer=l2), params["batchnorm"])
        x = layers.MaxPool2D(2, strides=2, padding="same")(x)
        if params["dropout"] > 0:
            x = layers.Dropout(params["dropout"])(x)
    x = layers.Flatten()(x)
    x = _block(x, layers.Dense(256, kernel_regularizer=l2), params["batchnorm"])
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    smoothing, classes = params["label_smoothing"], num_classes

    def loss(y_true, y_pred):  # integer labels, smoothed as one-hot targets
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss=loss, metrics=["accuracy"])
    return model
