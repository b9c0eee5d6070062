"""Kept models in S3 for real: a sweep against SeaweedFS's S3 gateway, started by the test.

The same checks as the folder store (`test_kept_models.py`): the best `keep_top` models stay in
the bucket under the prefix and the rest are removed, `sweeper export --best` re-evaluates the
best to its recorded val_acc, the dashboard lists the best trial's model and serves it from the
bucket; a wrong key or bucket is one line at start, before the study is touched, with no secret
printed; and the server stopped mid-sweep costs models, never results: every trial is recorded
(`model_saved = false` once the store is gone) and the fleet finishes the exact budget.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import FIXTURE_DATA, run_sweeper, study_file, sweeper_command
from tests.dashboard import start_dashboard, stop_dashboard
from tests.fleet import assert_exact_budget, trials, wait_for
from tests.seaweedfs import SECRET_KEY, S3Server, seaweedfs

BUCKET, PREFIX = "models", "sweeps/team-a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def s3_env(s3: S3Server, cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWEEPER_", "AWS_"))}
    env.update(SWEEPER_DATA_DIR=str(FIXTURE_DATA), SWEEPER_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    return {**env, **s3.env(SWEEPER_ARTIFACTS=f"s3://{BUCKET}/{PREFIX}")}


def test_a_sweep_keeps_its_best_models_in_the_bucket_and_export_reevaluates_the_best(
    s3: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    path = study_file(tmp_path, study={"name": "in-s3", "budget": 4}, artifacts={"keep_top": 2},
                      pruner={"type": "none"}, training={"max_train_images": 100})  # fmt: skip
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_sweeper("sweep", str(path), "--workers", "2", "--storage", url, env=s3_env, timeout=600)
    assert result.returncode == 0, result.stderr
    complete = sorted(optuna.load_study(study_name="in-s3", storage=url).trials, key=lambda t: -(t.value or 0))
    assert [t.state for t in complete] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["model_saved"] for t in complete)
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/").get("Contents", [])
    stored = sorted(item["Key"].removeprefix(f"{PREFIX}/") for item in listed)
    assert stored == sorted(t.user_attrs["model_artifact_id"] for t in complete[:2])  # the rest removed
    assert SECRET_KEY not in result.stderr + result.stdout

    out = tmp_path / "best.keras"
    exported = run_sweeper("export", "in-s3", "--best", "--out", str(out), "--storage", url, env=s3_env)
    assert exported.returncode == 0, exported.stderr
    line = re.fullmatch(r"trial (\d+): val_acc recorded (\S+), re-evaluated (\S+) -> (.+)\n", exported.stdout)
    assert line and int(line[1]) == complete[0].number and line[2] == line[3], exported.stdout
    assert out.stat().st_size > 0

    process, base = start_dashboard(url, s3_env)
    try:
        study_id = optuna.storages.RDBStorage(url).get_study_id_from_name("in-s3")
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=30) as response:
            listed_trials = json.load(response)["trials"]
        best = next(t for t in listed_trials if t["number"] == complete[0].number)
        (artifact,) = best["artifacts"]
        link = f"{base}/artifacts/{study_id}/{best['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(link, timeout=60) as response:
            served = response.read()
    finally:
        stop_dashboard(process)
    assert artifact["artifact_id"] == complete[0].user_attrs["model_artifact_id"]
    assert served == s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/{artifact['artifact_id']}")["Body"].read()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "a-wrong-secret"}, "is not writable"),
        ({"SWEEPER_ARTIFACTS": "s3://no-such-bucket/x"}, "is not writable"),
    ],
)
def test_a_wrong_key_or_bucket_is_one_line_before_the_study_is_touched(
    s3_env: dict[str, str], tmp_path: Path, change: dict[str, str], message: str
) -> None:
    path = study_file(tmp_path, study={"name": "refused", "budget": 1})
    database = tmp_path / "study.db"
    result = run_sweeper("worker", str(path), "--storage", f"sqlite:///{database}", env={**s3_env, **change})
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0] and "s3://" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "a-wrong-secret" not in result.stderr
    assert SECRET_KEY not in result.stderr and not database.exists()


def test_the_store_stopped_mid_sweep_costs_models_never_results(s3_env: dict[str, str], tmp_path: Path) -> None:
    budget = 8
    (tmp_path / "weed").mkdir()
    with seaweedfs(tmp_path / "weed") as own:  # a server of its own: this test stops it
        own.client().create_bucket(Bucket=BUCKET)
        env = {**s3_env, **own.env(SWEEPER_ARTIFACTS=f"s3://{BUCKET}/{PREFIX}")}
        path = study_file(tmp_path, study={"name": "s3-outage", "budget": budget}, artifacts={"keep_top": 1},
                          pruner={"type": "none"}, training={"max_train_images": 100})  # fmt: skip
        url = f"sqlite:///{tmp_path / 'study.db'}"
        command = sweeper_command("sweep", str(path), "--workers", "2", "--storage", url)
        sweep = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(t.user_attrs.get("model_saved") for t in trials(url, "s3-outage")), timeout=600,
                 what="a first model in the bucket")  # fmt: skip
        own.process.terminate()
        own.process.wait(timeout=60)
        stdout, stderr = sweep.communicate(timeout=900)

    assert sweep.returncode == 0, stderr
    finished = assert_exact_budget(url, "s3-outage", budget)
    assert {t.state for t in finished} == {TrialState.COMPLETE}, "a lost store never fails a trial"
    unsaved = [t for t in finished if not t.user_attrs["model_saved"]]
    assert unsaved, "trials finished after the store stopped"
    assert all(t.user_attrs["model_error"].startswith("upload failed") for t in unsaved)
    assert "model not kept" in stderr and "its result is recorded" in stderr
    assert "Traceback" not in stderr + stdout and SECRET_KEY not in stderr + stdout
