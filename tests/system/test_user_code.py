"""Sweep your own model: a `[model]` builder and `[data]` loader beside the study file (issue #20)."""

from __future__ import annotations

import json
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy
import tomli_w
from optuna.trial import TrialState

from sweeper import cli, studyfile
from sweeper.storage import urls
from sweeper.training import preflight
from tests.conftest import ROOT, run_sweeper, sweeper_main
from tests.fleet import WorkerProcess, assert_exact_budget, proc_status, trials, wait_for

REFUSED_RATE = 0.0123
"""The one learning rate `build` refuses: a sampled rate never hits it, only a baseline asks for it."""
SLOW_RATE = 0.0234
"""The one learning rate `build_slow` takes ten minutes to build (its child never writes meanwhile)."""

MODULE = f"""
import keras
import numpy as np
from sklearn.datasets import load_digits


def build(params, input_shape, num_classes):
    if params["learning_rate"] == {REFUSED_RATE}:
        raise ValueError("asked to fail")
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(params["units"], activation=params["activation"]),
                              keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def load():
    digits = load_digits()
    x, y = (digits.data[:500] / 16.0).astype(np.float32), digits.target[:500]
    return x[:350], y[:350], x[350:], y[350:]


def build_slow(params, input_shape, num_classes):
    if params["learning_rate"] == {SLOW_RATE}:
        import time
        time.sleep(600)
    return build(params, input_shape, num_classes)


def build_raises(params, input_shape, num_classes):
    raise RuntimeError("the builder broke")


def build_none(params, input_shape, num_classes):
    return None


def build_no_accuracy(params, input_shape, num_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def load_mismatched():
    x_train, y_train, x_val, y_val = load()
    return x_train, y_train[:-1], x_val, y_val


def load_nan():
    x_train, y_train, x_val, y_val = load()
    x_train = x_train.astype("float32")
    x_train[3, 0] = float("nan")
    return x_train, y_train, x_val, y_val


def load_raises():
    raise OSError("the data is not there")
"""


def _study(
    tmp_path: Path, name: str = "mine", builder: str = "mymodel:build", loader: str = "mymodel:load", **sections
) -> Path:
    """A study of the digits MLP in `mymodel.py` beside it; `sections` update its sections' keys."""
    (tmp_path / "mymodel.py").write_text(textwrap.dedent(MODULE))
    spec = {
        "study": {"name": name, "budget": 4},
        "model": {"builder": builder},
        "data": {"loader": loader},
        "space": {
            "units": {"type": "int", "low": 8, "high": 64, "step": 8},
            "activation": {"choices": ["relu", "tanh"]},
            "learning_rate": {"low": 1e-3, "high": 3e-2, "log": True},
        },
        "training": {"epochs": 3, "batch_size": 64},
        "sampler": {"type": "tpe", "seed": 1, "n_startup_trials": 2},
        "report": {"x": "units", "group_by": "activation"},
        "fleet": {"heartbeat_seconds": 1, "stale_after_seconds": 4, "trials_per_child": 8, "poll_seconds": 0.5},
    }
    for section, values in sections.items():
        spec[section] = {**spec[section], **values} if isinstance(values, dict) else values
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


@pytest.mark.parametrize("name", ["cifar10-regularization", "cifar10-regularizers", "digits-mlp"])
def test_the_example_study_files_validate(name: str) -> None:
    spec = studyfile.load(ROOT / "studies" / f"{name}.toml")
    assert spec.space.distributions() and spec.folder == ROOT / "studies"


def test_a_users_model_runs_on_two_workers_a_raising_build_fails_only_its_trial_and_the_report_names_the_best(
    pg_url: str, cli_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The second baseline's builder raises in a training child: that trial fails with the reason,
    # which spends the child, and its worker goes on in a fresh one.
    first = {"units": 16, "activation": "relu", "learning_rate": 0.01}
    path = _study(tmp_path, baselines=[first, {**first, "learning_rate": REFUSED_RATE}], fleet={"max_retries": 0})
    # The default backend; `sweep --backend jax` reaches the training children in the GPU check's CPU run.
    result = run_sweeper("sweep", str(path), "--workers", "2", "--storage", pg_url, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    stored = assert_exact_budget(pg_url, "mine", 4)
    [failed] = [t for t in stored if t.state == TrialState.FAIL]
    assert failed.params["learning_rate"] == REFUSED_RATE
    assert "ValueError: asked to fail" in failed.user_attrs["fail_reason"]
    finished = [t for t in stored if t.state == TrialState.COMPLETE]
    assert len(finished) == 4
    best = max(finished, key=lambda t: t.value)
    assert {(t.user_attrs["backend"], t.user_attrs["device"]) for t in finished} == {("tensorflow", "cpu")}
    assert best.value > 0.3 and len({t.user_attrs["worker"] for t in trials(pg_url, "mine")}) == 2
    assert not list(Path(cli_env["SWEEPER_CACHE_DIR"]).glob("user-data-*"))  # the sweep's one copy, shared, is gone
    report = sweeper_main(capsys, "report", "mine", "--storage", pg_url, "-f", "json")
    content = json.loads(report.stdout)
    assert content["best"]["params"] == best.params
    assert set(content["parameters"]) == {"units", "activation", "learning_rate"}
    assert f"units {best.params['units']}" in content["answer"] and {
        r["activation"] for r in content["regularizers"]
    } == {"relu", "tanh"}
    text = sweeper_main(capsys, "report", "mine", "--storage", pg_url).stdout
    assert "activation" in text and "units" in text and "Traceback" not in text
    html = sweeper_main(capsys, "report", "mine", "--storage", pg_url, "-f", "html", "--out", str(tmp_path / "r.html"))
    assert html.returncode == 0 and 'data-figure="regularizer"' in (tmp_path / "r.html").read_text()


MISTAKES = {
    "no-module": ({"builder": "nosuch:build"}, r"no module 'nosuch' in .* or on sys.path"),
    "no-function": ({"builder": "mymodel:nothing"}, r"module mymodel \(.*mymodel.py\) has no function 'nothing'"),
    "builder-raises": (
        {"builder": "mymodel:build_raises"},
        r"mymodel:build_raises raised RuntimeError: the builder broke",
    ),
    "wrong-return": (
        {"builder": "mymodel:build_none"},
        r"mymodel:build_none returned NoneType; expected a compiled keras.Model",
    ),
    "no-accuracy": ({"builder": "mymodel:build_no_accuracy"}, r"compile it with metrics=\['accuracy'\]"),
    "mismatched": ({"loader": "mymodel:load_mismatched"}, r"x_train has 350 rows but y_train has 349"),
    "nan-arrays": (
        {"loader": "mymodel:load_nan"},
        r"mymodel:load_nan: x_train must hold finite numbers; it holds NaN, infinity or non-numbers",
    ),
    "loader-raises": ({"loader": "mymodel:load_raises"}, r"mymodel:load_raises raised OSError: the data is not there"),
}


WIRED = ("no-module", "loader-raises")  # a builder's and a loader's mistake through the whole worker


def _mistake_study(tmp_path: Path, case: str) -> tuple[Path, str]:
    given, message = MISTAKES[case]
    return _study(tmp_path, **{"builder": "mymodel:build", "loader": "mymodel:load", **given}), message


@pytest.mark.parametrize("case", [case for case in MISTAKES if case not in WIRED])
def test_the_check_names_each_mistake_in_one_line(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check process's own entry point, in this process: what it writes for the worker to show."""
    path, message = _mistake_study(tmp_path, case)
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)  # this test's module, not an earlier test's
    (tmp_path / "data").mkdir()
    (tmp_path / "result").mkdir()
    assert preflight.main([str(path), str(tmp_path / "data"), str(tmp_path / "result")]) == 0
    error = json.loads((tmp_path / "result" / preflight.PREFLIGHT_RESULT).read_text())["error"]
    assert re.search(message, error) and "\n" not in error, error


@pytest.mark.parametrize("case", WIRED)
def test_mistakes_in_user_code_are_one_line_before_the_database(
    case: str, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, message = _mistake_study(tmp_path, case)
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SWEEPER_ARTIFACTS", f"file://{tmp_path / 'models'}")
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # the check is the same on any backend; JAX's Keras starts quickest
    code = cli.main(["worker", str(path), "--storage", pg_url])
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = [line for line in err.splitlines() if line.startswith("sweeper: error:")]
    assert str(path) in line and re.search(message, line), err
    assert "Traceback" not in err
    engine = sqlalchemy.create_engine(urls.resolve_url(pg_url), poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as connection:
        assert sqlalchemy.inspect(connection).get_table_names() == []  # the database was never touched
    engine.dispose()
    assert not list((tmp_path / "cache").glob("user-data-*"))  # nothing left behind


def test_a_killed_workers_training_child_dies_with_it_even_mid_build(
    pg_url: str, cli_env: dict, tmp_path: Path
) -> None:
    quick = {"units": 32, "activation": "relu", "learning_rate": 0.01}  # the first baseline is also the check's build
    path = _study(
        tmp_path, name="orphan", builder="mymodel:build_slow", baselines=[quick, {**quick, "learning_rate": SLOW_RATE}]
    )
    worker = WorkerProcess(path, pg_url, cli_env, tmp_path)
    try:
        wait_for(lambda: "trial 1 started" in worker.log(), what="the slow baseline to start", timeout=180)
        child = wait_for(worker.training_child, what="the training child")
        time.sleep(1)  # into the builder's sleep: the child reads nothing from the worker meanwhile
        worker.signal(signal.SIGKILL)
        worker.wait()
        wait_for(lambda: _gone(child), what=f"the dead worker's child {child} to end", timeout=30)
    finally:
        worker.kill_all()


def _gone(pid: int) -> bool:
    try:
        return proc_status(pid, "State").startswith("Z")
    except FileNotFoundError:
        return True
