"""A study written by the last release is read by this one and reported exactly as it was then.

`tests/fixtures/v0.1.0/smoke.db` is `studies/smoke.toml` swept by sweeper 0.1.0 (`sweeper sweep
studies/smoke.toml --workers 2` on the committed CIFAR-10 slice), and `report.*` is what 0.1.0's
`sweeper report smoke` printed for it, with the storage URL written as `{storage}`. A change to
what sweeper stores or how it reads it shows here as a report that is no longer the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, sweeper_main

RELEASE = ROOT / "tests" / "fixtures" / "v0.1.0"


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_a_study_written_by_the_last_release_is_reported_as_it_was(fmt: str, tmp_path: Path, capsys) -> None:
    database = tmp_path / "smoke.db"
    shutil.copy(RELEASE / "smoke.db", database)  # reading must not need to write, but never the fixture
    url = f"sqlite:///{database}"
    result = sweeper_main(capsys, "report", "smoke", "--storage", url, "-f", fmt)
    assert result.returncode == 0, result.stderr
    expected = (RELEASE / f"report.{fmt}").read_bytes().decode()  # as written: CSV lines end in \r\n
    assert result.stdout == expected.replace("{storage}", url)
