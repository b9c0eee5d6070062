"""One line per study: what `sweeper studies` lists, on the study 0.1.0 wrote and one sweeper did not."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna

from sweeper.reporting.study_list import studies_table, summaries
from sweeper.storage import connect
from tests.conftest import ROOT


def test_each_study_is_one_line_with_its_budget_counts_best_and_model_store(tmp_path: Path) -> None:
    shutil.copy(ROOT / "tests" / "fixtures" / "v0.1.0" / "smoke.db", tmp_path / "smoke.db")
    url = f"sqlite:///{tmp_path / 'smoke.db'}"
    optuna.create_study(study_name="not-sweepers", storage=url)
    store = connect(url, create=False)
    try:
        rows = {row["study"]: row for row in summaries(store)}
    finally:
        store.close()
    smoke = rows["smoke"]
    assert (smoke["budget"], smoke["trials"], smoke["complete"], smoke["pruned"]) == (6, 6, 5, 1)
    assert smoke["best_trial"] == 3 and round(smoke["best_val_acc"], 4) == 0.1556
    assert smoke["models"] == f"file://{tmp_path / 'smoke-artifacts'}"
    other = rows["not-sweepers"]
    assert other["budget"] is None and other["trials"] == 0 and other["best_trial"] is None
    lines = studies_table(list(rows.values())).splitlines()
    assert len(lines) == 4 and "batchnorm=True" in lines[2] and "0.1556" in lines[2]
