"""The package's public surface: a few names, imported on first use, and its version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import sweeper
from tests.conftest import ROOT, sweeper_main


def test_import_sweeper_loads_nothing_heavy() -> None:
    code = (
        "import sys, sweeper; print(sorted(m for m in ('optuna', 'keras', 'numpy', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_resolve_and_nothing_else_does() -> None:
    spec = sweeper.load_study_file(ROOT / "studies" / "smoke.toml")
    assert isinstance(spec, sweeper.StudySpec) and spec.name == "smoke"
    assert {sweeper.connect.__module__, sweeper.open_study.__module__, sweeper.Worker.__module__} == {
        "sweeper.storage._store", "sweeper.fleet._shared_study", "sweeper.fleet.worker"
    }  # fmt: skip
    with pytest.raises(AttributeError, match="has no attribute 'heldtrial'"):
        sweeper.heldtrial  # noqa: B018


def test_the_version_is_defined_once_and_printed(capsys: pytest.CaptureFixture) -> None:
    assert importlib.metadata.version("sweeper") == sweeper.__version__  # pyproject.toml reads it
    result = sweeper_main(capsys, "--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"sweeper {sweeper.__version__}")
