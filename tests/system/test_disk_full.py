"""A full disk, on a real tmpfs of a few MB: results are never lost, partial files never stay, and
a database that cannot be written stops the worker with one clear line instead of an outage's retries.

A tutorial model is about 10 MB: on 25 MB the default model store beside the SQLite file fills
after two, which is how the fault was found (a finished trial's result lost, two trials RUNNING).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import QUICK_TRAINING, run_sweeper, study_file
from tests.fleet import WorkerProcess, assert_exact_budget, trials, wait_for


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 25 MB tmpfs of the test's own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=25m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of `disk`."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_models_filling_the_disk_lose_no_result_and_leave_no_partial_file(
    small_disk: Path, cli_env: dict, tmp_path: Path
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SWEEPER_ARTIFACTS"}  # the default: beside the database
    path = study_file(
        tmp_path, study={"name": "full", "budget": 4}, training=QUICK_TRAINING, artifacts={"keep_top": 4},
        pruner={"type": "none"}, baselines=[],
    )  # fmt: skip
    url = f"sqlite:///{small_disk / 'sweeper.db'}"
    result = run_sweeper("worker", str(path), "--storage", url, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "less than the 40 MB its best 4 models need and shares it with the study's database" in result.stderr
    finished = assert_exact_budget(url, "full", 4)
    saved = [t for t in finished if t.user_attrs.get("model_saved")]
    unsaved = [t for t in finished if not t.user_attrs.get("model_saved")]
    assert saved and unsaved, "25 MB holds some 10 MB models, not four"
    assert all("No space left on device" in t.user_attrs["model_error"] for t in unsaved)
    stored = sorted(p.name for p in (small_disk / "sweeper-artifacts").iterdir())
    assert stored == sorted(t.user_attrs["model_artifact_id"] for t in saved), "a partial upload stayed"

    _fill(small_disk)
    out = small_disk / "exported.keras"
    exported = run_sweeper("export", "full", "--best", "--out", str(out), "--no-evaluate", "--storage", url, env=env)
    assert exported.returncode == 2 and f"cannot write {out}: No space left on device" in exported.stderr
    assert not out.exists(), "a truncated model was left where the user asked for one"


def test_a_database_disk_filling_mid_trial_stops_the_worker_and_nothing_is_lost(
    small_disk: Path, cli_env: dict, tmp_path: Path
) -> None:
    path = study_file(tmp_path, study={"name": "stuck", "budget": 2}, training={**QUICK_TRAINING, "epochs": 40})
    url = f"sqlite:///{small_disk / 'sweeper.db'}"
    worker = WorkerProcess(path, url, cli_env, tmp_path)
    wait_for(lambda: any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials(url, "stuck")),
             what="a trial reporting epochs")  # fmt: skip
    filler = _fill(small_disk)
    assert worker.wait(timeout=120) == 1, worker.log()
    log = worker.log()
    assert "the disk is full" in log and "free space, then start the worker again" in log
    assert "retrying" not in log and "Traceback" not in log
    filler.unlink()
    path = study_file(tmp_path, study={"name": "stuck", "budget": 2}, training=QUICK_TRAINING)
    again = run_sweeper("worker", str(path), "--storage", url, "--allow-settings-change", env=cli_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    states = [t.state for t in assert_exact_budget(url, "stuck", 2)]
    assert TrialState.FAIL in states, "the trial cut short by the full disk is reaped and queued again"
