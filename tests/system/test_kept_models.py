"""Kept models: the best `keep_top` trained models in a real file store, exported and re-evaluated.

Real PostgreSQL, real smoke trials on real CIFAR-10 images, Optuna's file artifact store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper import storage
from sweeper.artifacts import kept_models, model_stores
from sweeper.errors import SweeperError
from tests.conftest import FIXTURE_DATA, QUICK_TRAINING, ROOT, _fresh_database, run_sweeper, study_file, sweeper_main
from tests.fleet import FINISHED, trials
from tests.ports import free_port


@pytest.fixture(scope="module")
def swept(
    pg_server: str, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict, Path]]:
    """A smoke study of 4 trials on PostgreSQL that keeps its best 2 models (one sweep for the module)."""
    tmp = tmp_path_factory.mktemp("kept")
    env = {k: v for k, v in os.environ.items() if k != "SWEEPER_STORAGE"}
    env.update(
        SWEEPER_DATA_DIR=str(FIXTURE_DATA),
        SWEEPER_CACHE_DIR=str(cache_dir),
        SWEEPER_ARTIFACTS=f"file://{tmp / 'models'}",
    )
    path = study_file(
        tmp,
        study={"name": "kept", "budget": 4},
        artifacts={"keep_top": 2},
        pruner={"type": "none"},
        training={"max_train_images": 100, "steps_per_execution": 2},
    )
    for url in _fresh_database(pg_server):
        result = run_sweeper("sweep", str(path), "--workers", "2", "--storage", url, env=env)
        assert result.returncode == 0, result.stderr
        # Not a terminal: plain log lines, one per epoch, and none of TensorFlow's start-up noise.
        log = result.stderr
        assert re.search(r"trial \d+ epoch 1/2 val_acc=0\.\d{4} best=0\.\d{4} \d+\.\ds/epoch", log), log
        assert "oneDNN" not in log and "absl" not in log and "\x1b" not in log, log
        yield url, env, tmp / "models"


def test_the_best_keep_top_models_stay_and_export_reproduces_the_best(swept, tmp_path: Path, monkeypatch) -> None:
    url, env, store = swept
    complete = sorted(trials(url, "kept"), key=lambda t: -t.value)
    assert [t.state for t in complete] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["model_saved"] and t.user_attrs["run_eagerly"] is False for t in complete)  # a graph
    assert all(t.user_attrs["steps_per_execution"] == 2 for t in complete)  # the study file's, two batches a call
    assert sorted(p.name for p in store.iterdir()) == sorted(t.user_attrs["model_artifact_id"] for t in complete[:2])
    removed = optuna.load_study(study_name="kept", storage=url).user_attrs["models_removed"]
    assert sorted(removed) == sorted(t.number for t in complete[2:])

    out = tmp_path / "best.keras"
    result = run_sweeper("export", "kept", "--best", "--out", str(out), "--storage", url, env=env)
    assert result.returncode == 0, result.stderr
    line = re.fullmatch(r"trial (\d+): val_acc recorded (\S+), re-evaluated (\S+) -> (.+)\n", result.stdout)
    assert line, result.stdout
    assert int(line[1]) == complete[0].number and line[2] == line[3] and line[4] == str(out)
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr

    monkeypatch.setenv("SWEEPER_ARTIFACTS", env["SWEEPER_ARTIFACTS"])
    model = sweeper.load_model("kept", storage=url)
    predictions = model.predict(np.zeros((3, 32, 32, 3), "float32"), verbose=0)
    assert predictions.shape == (3, 10) and np.allclose(predictions.sum(axis=1), 1, atol=1e-3)


def test_exporting_what_is_not_kept_is_a_clear_error(swept, tmp_path: Path, capsys, monkeypatch) -> None:
    url, env, _ = swept
    monkeypatch.setenv("SWEEPER_ARTIFACTS", env["SWEEPER_ARTIFACTS"])
    dropped = optuna.load_study(study_name="kept", storage=url).user_attrs["models_removed"][0]
    out = str(tmp_path / "m.keras")
    for args, message in [
        (["kept", "--trial", str(dropped)], f"trial {dropped}'s model was removed from the store"),
        (["kept", "--trial", "99"], "study 'kept' has no trial 99"),
        (["nope", "--best"], "no study named 'nope'"),
    ]:
        result = sweeper_main(capsys, "export", *args, "--out", out, "--storage", url)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_postgresql_worker_with_a_bad_model_store_stops_before_touching_the_database(
    pg_url: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    path = str(study_file(tmp_path, study={"name": "nowhere", "budget": 1}))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("SWEEPER_ARTIFACTS", f"file://{blocked}")
    result = sweeper_main(capsys, "worker", path, "--storage", pg_url)
    assert result.returncode == 2 and "is not writable" in result.stderr
    secret = "never-print-this-secret"
    unreachable = {  # a real S3 client against a port where nothing listens
        "SWEEPER_ARTIFACTS": "s3://models/sweeps", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "sweeper-test", "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }  # fmt: skip
    for name, value in unreachable.items():
        monkeypatch.setenv(name, value)
    result = sweeper_main(capsys, "worker", path, "--storage", pg_url)
    assert result.returncode == 2 and "model store s3://models/sweeps is not writable" in result.stderr
    assert "Traceback" not in result.stderr and secret not in result.stderr + result.stdout
    store = storage.connect(pg_url)
    try:
        assert optuna.get_all_study_summaries(store.storage) == []
    finally:
        store.close()


def test_an_upload_that_fails_records_the_result_without_a_model(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", direction="maximize")
    folder = tmp_path / "models"
    keeper = kept_models.ModelKeeper(model_stores.open_store(f"file://{folder}"), 2, lambda: None)
    trial = study.ask()
    keeper.path_for(trial.number).write_bytes(b"a model")
    folder.rmdir()  # the store went away mid-sweep
    kept = keeper.keep(trial)
    assert kept.model_saved is False and "upload failed" in (kept.model_error or "")
    assert not keeper.path_for(trial.number).exists()
    keeper.close()


def test_keep_top_must_be_positive_and_the_store_a_file_or_s3_url() -> None:
    from sweeper import studyfile

    text = (ROOT / "studies" / "smoke.toml").read_text()
    for extra, message in [
        ("keep_top = 0", "keep_top"),
        ('store = "models/"', "expected file:///absolute/path or s3://"),
    ]:
        with pytest.raises(SweeperError, match=re.escape(message)):
            studyfile.parse(text + f"\n[artifacts]\n{extra}\n")
    assert studyfile.parse(text + '\n[artifacts]\nstore = "s3://bucket/x"\n').artifacts.store == "s3://bucket/x"


def test_a_postgresql_worker_without_a_model_store_sweeps_and_says_models_are_not_kept(
    pg_url: str, cli_env: dict, tmp_path: Path
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SWEEPER_ARTIFACTS"}
    path = study_file(tmp_path, study={"name": "unkept", "budget": 1}, training=QUICK_TRAINING)
    result = run_sweeper("worker", str(path), "--storage", pg_url, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "models are not kept: this PostgreSQL study names no store for them" in result.stderr
    assert "set SWEEPER_ARTIFACTS=file:///path" in result.stderr
    (trial,) = trials(pg_url, "unkept")
    assert trial.state in FINISHED and not trial.user_attrs.get("model_saved")
    assert not list(tmp_path.glob("*artifacts*")) and not (tmp_path / "models").exists()
