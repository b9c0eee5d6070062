"""The loader reads the official CIFAR-10 format and prepares it exactly as the tutorial does."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from sweeper.errors import DataError
from sweeper.studyfile import Training
from sweeper.training import data, prepared
from tests.conftest import FIXTURE_DATA


def test_reads_official_batches() -> None:
    images, labels = data.read_batch(FIXTURE_DATA / "data_batch_1")
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (100,) and 0 <= labels.min() and labels.max() <= 9
    assert len(np.unique(labels)) == 10  # real CIFAR-10: every class among the first 100 images


def test_standardizes_with_training_statistics_then_splits_70_30() -> None:
    x_train, y_train, x_test, y_test = data.load_raw(FIXTURE_DATA, FIXTURE_DATA)
    assert x_train.shape == (500, 32, 32, 3) and x_test.shape == (100, 32, 32, 3)
    prepared = data.prepare_arrays(x_train, y_train, Training())

    raw = x_train.astype(np.float32)
    np.testing.assert_allclose(prepared.mean, raw.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(prepared.std, raw.std(axis=(0, 1, 2)), rtol=1e-5)
    with_test = np.concatenate([raw, x_test.astype(np.float32)]).mean(axis=(0, 1, 2))
    assert not np.allclose(prepared.mean, with_test, rtol=1e-4)  # the test images were left out

    everything = np.concatenate([prepared.x_train, prepared.x_val])
    np.testing.assert_allclose(everything.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(everything.std(axis=(0, 1, 2)), 1, atol=1e-4)

    _, _, expected_train, expected_val = train_test_split(raw, y_train, test_size=0.3, random_state=777)
    assert len(prepared.x_train) == 350 and len(prepared.x_val) == 150
    np.testing.assert_array_equal(prepared.y_train, expected_train)
    np.testing.assert_array_equal(prepared.y_val, expected_val)


def test_cap_on_training_images_keeps_the_first_ones() -> None:
    raw = data.load_raw(FIXTURE_DATA, FIXTURE_DATA)
    prepared = data.prepare_arrays(raw[0], raw[1], Training(max_train_images=200))
    assert len(prepared.x_train) + len(prepared.x_val) == 200
    np.testing.assert_allclose(prepared.mean, raw[0][:200].astype(np.float32).mean(axis=(0, 1, 2)), rtol=1e-5)


def test_prepared_cache_is_memory_mapped_and_reused(tmp_path) -> None:
    folder = data.prepare(FIXTURE_DATA, Training(max_train_images=300), cache_dir=tmp_path)
    assert data.prepare(FIXTURE_DATA, Training(max_train_images=300), cache_dir=tmp_path) == folder
    mapped = prepared.open_prepared(folder)
    assert isinstance(mapped.x_train, np.memmap) and mapped.x_train.shape == (210, 32, 32, 3)


def test_reads_the_official_tarball(tmp_path) -> None:
    import tarfile

    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(FIXTURE_DATA, arcname="cifar-10-batches-py")
    x_train, _, x_test, _ = data.load_raw(tmp_path, tmp_path / "cache")
    assert x_train.shape == (500, 32, 32, 3) and x_test.shape == (100, 32, 32, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "holds no CIFAR-10 data"),
        (b"not a pickle", "corrupt or truncated"),
        (b"\x80\x04\x95", "corrupt or truncated"),
    ],
)
def test_bad_data_directories_give_clear_errors(tmp_path, content, message) -> None:
    if content is not None:
        (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(DataError, match=message):
        data.load_raw(tmp_path, tmp_path)
