"""Side A of the trainer-overhead benchmark: the tutorial's script, nothing of sweeper's machinery.

Loads CIFAR-10 from a cifar-10-batches-py folder, standardizes and splits it as the tutorial does,
builds the same CNN and calls model.fit once. Prints one JSON line: per-epoch seconds and history.
    python benchmarks/plain_fit.py DATA_DIR EPOCHS MAX_IMAGES DROPOUT BATCHNORM LR SEED [JIT_COMPILE]

JIT_COMPILE is `false` by default (the trainer-overhead benchmark's CPU comparison); the GPU
check passes `auto`, Keras' own default, which the tutorial's script gets by not naming it.
"""

import json
import sys
import time

started = time.time()

import keras  # noqa: E402

from sweeper.studyfile import Training  # noqa: E402
from sweeper.training import data  # noqa: E402  (the official-format reader; keras' load_data needs full batches)
from sweeper.training.model import build_model  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def main() -> None:
    data_dir, epochs, max_images, dropout, batchnorm, lr, seed = sys.argv[1:8]
    jit_compile: bool | str = (
        {"false": False, "true": True}.get(sys.argv[8], sys.argv[8]) if len(sys.argv) > 8 else False
    )
    from pathlib import Path

    raw = data.load_raw(Path(data_dir), Path("/tmp"))
    ds = data.prepare_arrays(raw[0], raw[1], Training(max_train_images=int(max_images) or None))
    keras.utils.set_random_seed(int(seed))
    model = build_model(float(dropout), batchnorm == "true", float(lr), jit_compile=jit_compile)
    timer = EpochTimer()
    history = model.fit(ds.x_train, ds.y_train, batch_size=32, epochs=int(epochs),
                        validation_data=(ds.x_val, ds.y_val), callbacks=[timer], verbose=0)  # fmt: skip
    print(json.dumps({"epoch_seconds": timer.seconds, "val_acc": history.history["val_acc"],
                      "train_images": len(ds.x_train), "started": started}))  # fmt: skip


if __name__ == "__main__":
    main()
