"""CIFAR-10 exactly as the tutorial prepares it, computed once per worker and memory-mapped by trials.

Source: a directory of the official `cifar-10-batches-py` pickles (or the official tarball), given
by `--data-dir` / `SWEEPER_DATA_DIR`; otherwise `keras.datasets.cifar10.load_data()`.
Preparation: per-channel standardization with the training set's mean and std over axes
(0, 1, 2), applied to train and test, then a 70/30 train/validation split with random_state 777.
"""

from __future__ import annotations

import hashlib
import os
import pickle  # nosec B403 # CIFAR-10 ships as pickles; _BatchUnpickler loads only arrays, bytes and dicts
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from sweeper.errors import DataError, SweeperError
from sweeper.studyfile import StudySpec, Training
from sweeper.training.prepared import ARRAYS, USER_DATA_PREFIX, Dataset, default_cache_dir

BATCHES_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
SHARED_FOLDER_ENV = "SWEEPER_SWEEP_DATA"
"""Set by `sweeper sweep` for the workers it starts: the folder it prepared, and whose `[model]` and
`[data]` it checked, once for them all. The sweep removes it when they have exited."""


class _BatchUnpickler(pickle.Unpickler):
    """The official batches hold only dicts, lists, bytes and one numpy array: allow nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch file → (N, 32, 32, 3) uint8 images and (N,) uint8 labels."""
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.uint8)
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing; a CIFAR-10 directory holds {', '.join(TRAIN_FILES)} and {TEST_FILE}"
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 batch file (corrupt or truncated: {exc})") from None
    if len(images) != len(labels) or (len(labels) and labels.max() > 9):
        raise DataError(f"{path}: not a CIFAR-10 batch file (images and labels do not match)")
    return images, labels


def _batches_dir(data_dir: Path, extract_to: Path) -> Path:
    """Find `cifar-10-batches-py` in what the user gave: that folder, its parent, or the tarball."""
    if not data_dir.exists():
        raise DataError(f"data directory {data_dir} does not exist (set --data-dir or SWEEPER_DATA_DIR)")
    for candidate in (data_dir, data_dir / BATCHES_DIR):
        if (candidate / TRAIN_FILES[0]).is_file():
            return candidate
    tarball = data_dir if data_dir.is_file() else data_dir / TARBALL
    if tarball.is_file():
        target = extract_to / f"tar-{_file_digest(tarball)}"
        if not (target / BATCHES_DIR / TRAIN_FILES[0]).is_file():
            try:
                with tarfile.open(tarball) as tar:
                    tar.extractall(target, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"{tarball}: cannot extract the CIFAR-10 archive: {exc}") from None
        return target / BATCHES_DIR
    raise DataError(
        f"{data_dir} holds no CIFAR-10 data: expected the {BATCHES_DIR} files "
        f"({TRAIN_FILES[0]} ... {TEST_FILE}) or {TARBALL}"
    )


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def load_raw(data_dir: Path | None, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw uint8 images and labels: (x_train, y_train, x_test, y_test)."""
    if data_dir is None:
        return _download()
    batches = _batches_dir(data_dir, cache_dir)
    train = [read_batch(batches / name) for name in TRAIN_FILES if (batches / name).exists()]
    x_test, y_test = read_batch(batches / TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    if len(x_train) == 0:
        raise DataError(f"{batches}: the training batches hold no images")
    return x_train, y_train, x_test, y_test


def _download() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # a download needs no TensorFlow start-up chatter
    import keras  # only here: the worker process never needs TensorFlow otherwise

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # Keras raises bare Exceptions for network failures
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"CIFAR-10 could not be downloaded ({reason}); point --data-dir or "
            f"SWEEPER_DATA_DIR at a directory with the official {BATCHES_DIR} files or {TARBALL}"
        ) from None
    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)


def prepare_arrays(x_train: np.ndarray, y_train: np.ndarray, training: Training) -> Dataset:
    """The tutorial's preprocessing, on raw uint8 training arrays (the test batch plays no part in a sweep)."""
    # Imported here: scikit-learn is most of a CLI command's start-up, and only a preparation splits.
    from sklearn.model_selection import train_test_split

    if training.max_train_images is not None:
        x_train, y_train = x_train[: training.max_train_images], y_train[: training.max_train_images]
    x_train = x_train.astype(np.float32)
    mean = x_train.mean(axis=(0, 1, 2))
    std = x_train.std(axis=(0, 1, 2))
    x_train = (x_train - mean) / std
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=training.validation_split, random_state=training.split_seed
    )
    return Dataset(x_train, y_train, x_val, y_val, mean.astype(np.float32), std.astype(np.float32))


def prepare(data_dir: Path | None, training: Training, cache_dir: Path | None = None) -> Path:
    """Prepare once and store as .npy files; returns the folder that `open_prepared` maps."""
    cache_dir = cache_dir or default_cache_dir()
    key = _cache_key(data_dir, training, cache_dir)
    target = cache_dir / f"cifar10-{key}"
    if all((target / f"{name}.npy").is_file() for name in ARRAYS):
        return target
    x_train, y_train, _, _ = load_raw(data_dir, cache_dir)
    dataset = prepare_arrays(x_train, y_train, training)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        for name in ARRAYS:
            np.save(staging / f"{name}.npy", getattr(dataset, name))
        try:
            staging.rename(target)  # atomic: concurrent workers never see half a cache
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging)  # another worker got there first with the same content
    except OSError as exc:
        raise DataError(f"cannot write the data cache in {cache_dir}: {exc} (set SWEEPER_CACHE_DIR)") from None
    return target


def prepare_for(
    spec: StudySpec, study_file: Path | None, data_dir: Path | None, backend: str, cache_dir: Path | None = None
) -> Path:
    """The folder a study's trials map: the tutorial's CIFAR-10, or its `[data]` loader's arrays,
    with its `[model]` builder checked once (`sweeper.training.preflight`)."""
    cache_dir = cache_dir or default_cache_dir()
    folder = prepare(data_dir, spec.training, cache_dir) if spec.data is None else None
    if folder is not None and spec.model is None:
        return folder
    if study_file is None:
        raise SweeperError("a study with [model] or [data] is checked from its file: load it from a file", 2)
    from sweeper.training import preflight

    return preflight.preflight(study_file, folder, cache_dir, backend)


def worker_folder(spec: StudySpec, data_dir: Path | None, backend: str) -> tuple[Path, bool]:
    """The folder a worker's trials map, and whether it is the worker's own to discard when it exits:
    the one its `sweep` prepared and checked, else its own."""
    shared = os.environ.get(SHARED_FOLDER_ENV)
    if shared:
        return Path(shared), False
    return prepare_for(spec, spec.source, data_dir, backend), True


def discard(folder: Path) -> None:
    """Remove a worker's own copy of a loader's arrays; the tutorial's shared cache stays."""
    if folder.name.startswith(USER_DATA_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def _cache_key(data_dir: Path | None, training: Training, cache_dir: Path) -> str:
    if data_dir is None:
        source = "keras"
    else:
        batches = _batches_dir(data_dir, cache_dir)
        source = ";".join(
            _file_digest(batches / name) for name in (*TRAIN_FILES, TEST_FILE) if (batches / name).exists()
        )
    recipe = f"{source}|{training.max_train_images}|{training.validation_split}|{training.split_seed}|v2"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def resolve_data_dir(cli_value: str | None) -> Path | None:
    value = cli_value or os.environ.get("SWEEPER_DATA_DIR")
    return Path(value) if value else None
