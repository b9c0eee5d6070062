"""A file written where the user said: a folder or a failed write is one line, and no partial file stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.errors import SweeperError
from sweeper.outfiles import writing


def test_a_folder_is_refused_with_a_file_name_to_use(tmp_path: Path) -> None:
    with pytest.raises(SweeperError, match="is a folder; give a file name such as .*model.keras"):
        with writing(tmp_path):
            pass


def test_a_write_cut_short_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    with pytest.raises(SweeperError, match=r"cannot write .*report.html: No space left on device") as failed:
        with writing(out):
            out.write_text("half a rep")
            raise OSError(28, "No space left on device")
    assert "\n" not in str(failed.value) and not out.exists()


def test_a_file_that_was_there_before_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "best.keras"
    out.write_text("the user's")
    with pytest.raises(SweeperError, match="File exists"):
        with writing(out):
            raise FileExistsError(17, "File exists")
    assert out.read_text() == "the user's"
