"""The user's `[model] builder` and `[data] loader`: found, called and checked before a sweep.

A study file names them as `module:function`; the module is looked up first in the study file's
own folder, then on `sys.path`. Both run in processes of their own, never in the worker: the
loader and a first build run once in a check process when a worker starts (`sweeper.training.preflight`), so an
import error, an exception, a wrong return value, a model without accuracy or arrays of
mismatched lengths is one clear line before the database is touched; after that the builder runs
only in the training child, where a crash fails its trial like any training failure.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sweeper.training.protocol import canonical_metrics

ARRAYS = ("x_train", "y_train", "x_val", "y_val")


class UserCodeError(Exception):
    """The user's function could not be found, raised, or returned the wrong thing (one line)."""


def resolve(reference: str, folder: Path) -> Callable[..., Any]:
    """`module:function` → the function, importing the module from `folder` first, then `sys.path`."""
    module_name, _, function = reference.partition(":")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise UserCodeError(f"importing {module_name} failed: {one_line(exc)}") from None
        raise UserCodeError(f"no module {module_name!r} in {folder} or on sys.path") from None
    except Exception as exc:  # the user's module raised while importing
        raise UserCodeError(f"importing {module_name} raised {one_line(exc)}") from None
    finally:
        sys.path.remove(str(folder))
    found = getattr(module, function, None)
    if not callable(found):
        raise UserCodeError(f"module {module_name} ({getattr(module, '__file__', '?')}) has no function {function!r}")
    return found


def num_classes(y_train: np.ndarray, y_val: np.ndarray) -> int:
    return int(max(y_train.max(initial=0), y_val.max(initial=0))) + 1


def build(reference: str, folder: Path, params: dict[str, Any], x_train: np.ndarray, classes: int) -> Any:
    """Call the builder and check that it returned a compiled `keras.Model`."""
    import keras

    builder = resolve(reference, folder)
    try:
        model = builder(dict(params), input_shape=tuple(x_train.shape[1:]), num_classes=classes)
    except Exception as exc:
        raise UserCodeError(f"{reference} raised {one_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise UserCodeError(f"{reference} returned {type(model).__name__}; expected a compiled keras.Model")
    if model.optimizer is None:
        raise UserCodeError(f"{reference} returned a model that is not compiled: call model.compile(...) in it")
    return model


def load(reference: str, folder: Path, max_train_images: int | None) -> dict[str, np.ndarray]:
    """Call the loader and check its four arrays."""
    loader = resolve(reference, folder)
    try:
        returned = loader()
    except Exception as exc:
        raise UserCodeError(f"{reference} raised {one_line(exc)}") from None
    if not (isinstance(returned, tuple | list) and len(returned) == 4):
        raise UserCodeError(
            f"{reference} returned {type(returned).__name__}; expected (x_train, y_train, x_val, y_val)"
        )
    arrays = dict(zip(ARRAYS, (np.asarray(a) for a in returned), strict=True))
    for split in ("train", "val"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise UserCodeError(
                f"{reference}: x_{split} has {len(x)} rows but y_{split} has {len(y)}; expected equal, > 0"
            )
        if x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and not np.isfinite(x).all()):
            raise UserCodeError(
                f"{reference}: x_{split} must hold finite numbers; it holds NaN, infinity or non-numbers"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or y.min() < 0:
            raise UserCodeError(f"{reference}: y_{split} must be a 1-D array of integer class labels from 0")
    if arrays["x_train"].shape[1:] != arrays["x_val"].shape[1:]:
        raise UserCodeError(
            f"{reference}: x_train rows {arrays['x_train'].shape[1:]} and x_val rows {arrays['x_val'].shape[1:]} differ"
        )
    if max_train_images is not None:
        arrays["x_train"], arrays["y_train"] = (
            arrays["x_train"][:max_train_images],
            arrays["y_train"][:max_train_images],
        )
    return arrays


def check_model(reference: str, folder: Path, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Build once and evaluate a few rows: shapes, classes and an accuracy metric, before any trial."""
    model = build(reference, folder, params, arrays["x_train"], num_classes(arrays["y_train"], arrays["y_val"]))
    try:
        logs = model.evaluate(arrays["x_val"][:8], arrays["y_val"][:8], verbose=0, return_dict=True)
    except Exception as exc:
        raise UserCodeError(f"the model from {reference} cannot evaluate the data: {one_line(exc)}") from None
    if "acc" not in canonical_metrics(logs):
        raise UserCodeError(f"the model from {reference} reports {sorted(logs)}; compile it with metrics=['accuracy']")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
