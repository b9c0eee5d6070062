"""Where kept models live: a folder store checked at start, whose failed writes leave nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sweeper.artifacts.model_stores import open_store
from sweeper.errors import SweeperError


class _FullDisk(io.BytesIO):
    def read(self, *args: object) -> bytes:
        raise OSError(28, "No space left on device")


def test_a_folder_store_is_created_and_round_trips(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'models'}")
    store.write("a", io.BytesIO(b"model"))
    assert store.open_reader("a").read() == b"model"
    store.remove("a")
    assert not (tmp_path / "models" / "a").exists() and not list((tmp_path / "models").iterdir())


def test_a_failed_write_removes_what_it_wrote(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    with pytest.raises(OSError, match="No space left"):
        store.write("b", _FullDisk())
    assert not (tmp_path / "b").exists()


def test_a_store_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SweeperError, match="is not writable"):
        open_store(f"file://{tmp_path / 'file' / 'models'}")
    with pytest.raises(SweeperError, match="does not exist"):
        open_store(f"file://{tmp_path / 'none'}", create=False)
    with pytest.raises(SweeperError, match="^model store: "):
        open_store("ftp://host/models")
