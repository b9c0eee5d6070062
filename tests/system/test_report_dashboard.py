"""`sweeper report` in every format, and the dashboard process in a real browser.

One PostgreSQL study is filled with real smoke trials for the whole module. The browser test adds
a trial to it while it watches the dashboard, so the other tests compare with what is stored rather
than with a fixed count: they hold in any order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper import storage
from sweeper.storage import urls
from tests.conftest import (
    QUICK_TRAINING,
    ROOT,
    _fresh_database,
    http_status,
    run_sweeper,
    study_file,
    sweeper_main,
)
from tests.dashboard import start_dashboard, stop_dashboard
from tests.fleet import FINISHED, trials, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def filled(
    pg_server: str, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path
) -> Iterator[tuple[str, Path, dict]]:
    """A smoke study in PostgreSQL with 3 finished trials (budget 4), its study file and CLI env."""
    from tests.conftest import FIXTURE_DATA

    env = {k: v for k, v in os.environ.items() if k != "SWEEPER_STORAGE"}
    tmp = tmp_path_factory.mktemp("report")
    env.update(SWEEPER_DATA_DIR=str(FIXTURE_DATA), SWEEPER_CACHE_DIR=str(cache_dir))
    env.update(SWEEPER_ARTIFACTS=f"file://{tmp / 'models'}")
    path = study_file(tmp, study={"name": "reported", "budget": 4}, training=QUICK_TRAINING)
    for url in _fresh_database(pg_server):
        result = run_sweeper("worker", str(path), "--storage", url, "--n-trials", "3", env=env)
        assert result.returncode == 0, result.stderr
        yield url, path, env


def test_json_report_matches_the_trials(filled, capsys) -> None:
    url, _, env = filled
    result = sweeper_main(capsys, "report", "reported", "--storage", url, "-f", "json")
    assert result.returncode == 0, result.stderr
    content = json.loads(result.stdout)
    stored = [t for t in trials(url, "reported") if t.state in FINISHED]
    assert content["study"] == "reported" and content["budget"] == 4 and content["trials"] == len(stored) >= 3
    assert content["counts"]["complete"] + content["counts"]["pruned"] == len(stored)
    best = max((t for t in stored if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert content["best"]["number"] == best.number and content["best"]["val_acc"] == best.value
    assert content["best"]["params"] == best.params
    assert content["best"]["overfit_gap"] == best.user_attrs["overfit_gap"]
    assert content["baseline"]["params"] == {"dropout": 0.2, "batchnorm": False, "learning_rate": 1e-4}
    assert [t["number"] for t in content["top"]] == [t.number for t in sorted(stored, key=lambda t: -t.value)]
    assert sum(row["trials"] for row in content["regularizers"]) == content["counts"]["complete"]
    assert {"study", "storage", "budget", "counts", "best", "baseline", "top", "regularizers", "answer"} <= set(content)


def test_table_report_answers_the_question(filled, capsys) -> None:
    url, _, env = filled
    result = sweeper_main(capsys, "report", "reported", "--storage", url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        out.startswith("study    reported")
        and "Best val_acc" in out
        and "the baseline (dropout 0.20, batch normalization off, learning rate 0.0001)" in out
    )
    for heading in ("Best trial and baseline", "Top 10 trials", "Regularizers"):
        assert heading in out


def test_csv_report_has_one_row_per_trial(filled, capsys) -> None:
    url, _, env = filled
    result = sweeper_main(capsys, "report", "reported", "--storage", url, "-f", "csv")
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    stored = trials(url, "reported")
    assert [int(r["number"]) for r in table] == [t.number for t in stored]
    assert {
        "state",
        "value",
        "dropout",
        "batchnorm",
        "learning_rate",
        "best_epoch",
        "overfit_gap",
        "history",
        "worker",
    } <= set(table[0])
    assert json.loads(table[0]["history"])["val_acc"] == stored[0].user_attrs["history"]["val_acc"]


def test_html_report_is_self_contained_with_every_figure(filled, tmp_path, capsys) -> None:
    url, _, env = filled
    out = tmp_path / "report.html"
    result = sweeper_main(capsys, "report", "reported", "--storage", url, "-f", "html", "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    for name in (
        "regularizer",
        "learning_rate",
        "gap",
        "curves",
        "importance",
        "timeline",
        "progress",
        "confirmed",
        "tradeoff",
    ):
        assert f'id="figure-{name}"' in page
    assert "<script src=" not in page and "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js inline


def test_unknown_study_lists_the_existing_ones(filled, capsys) -> None:
    url, _, env = filled
    result = sweeper_main(capsys, "report", "no-such-study", "--storage", url)
    assert result.returncode == 2
    assert "no study named 'no-such-study'" in result.stderr and "reported" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_and_failed_only_studies_get_clear_messages(filled, capsys) -> None:
    from sweeper import fleet, storage, studyfile

    url, path, env = filled
    spec = studyfile.load(path)
    store = storage.connect(urls.resolve_url(url))
    try:
        for name in ("empty", "failed-only"):
            fleet.open_study(store, spec.model_copy(update={"study": spec.study.model_copy(update={"name": name})}))
    finally:
        store.close()
    failed = optuna.load_study(study_name="failed-only", storage=urls.resolve_url(url))
    failed.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={"dropout": 0.3},
            distributions={"dropout": optuna.distributions.FloatDistribution(0.2, 0.5)},
        )
    )
    failed.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            value=0.11,
            params={"dropout": 0.4},
            distributions={"dropout": optuna.distributions.FloatDistribution(0.2, 0.5)},
            intermediate_values={1: 0.11},
        )
    )
    empty = sweeper_main(capsys, "report", "empty", "--storage", url)
    assert empty.returncode == 0 and "No finished trials yet" in empty.stdout, empty.stderr
    only = sweeper_main(capsys, "report", "failed-only", "--storage", url, "-f", "html", "--out", os.devnull)
    assert only.returncode == 0 and "Traceback" not in only.stderr, only.stderr
    table = sweeper_main(capsys, "report", "failed-only", "--storage", url)
    assert table.returncode == 0 and "1 fail" in table.stdout and "1 pruned" in table.stdout


def test_chart_refresher_never_writes_into_a_study_sweeper_did_not_create(tmp_path: Path) -> None:
    from sweeper import studyfile
    from sweeper.fleet import open_study
    from sweeper.reporting.dashboard import ChartRefresher

    store = storage.connect(f"sqlite:///{tmp_path / 'mixed.db'}")
    try:
        foreign = optuna.create_study(storage=store.storage, study_name="foreign", directions=["maximize", "minimize"])
        foreign.optimize(lambda t: (t.suggest_float("dropout", 0, 1), 1.0), n_trials=2)
        spec = studyfile.load(ROOT / "studies" / "smoke.toml")
        ours = open_study(store, spec)
        params = {"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}
        ours.add_trial(optuna.trial.create_trial(value=0.3, params=params, distributions=spec.space.distributions()))

        def system_attrs(name: str) -> dict:
            return store.storage.get_study_system_attrs(store.storage.get_study_id_from_name(name))

        foreign_before, ours_before = system_attrs("foreign"), system_attrs("smoke")
        assert ChartRefresher(store, 1.0).refresh() == 1
        assert system_attrs("foreign") == foreign_before
        assert len(system_attrs("smoke")) > len(ours_before)  # the charts went into sweeper's own study
    finally:
        store.close()


def test_dashboard_password_is_required_when_set(filled, tmp_path) -> None:
    url, _, env = filled
    secret = tmp_path / "dashboard-password"
    secret.write_text("s3cret-pass\n")
    process, base = start_dashboard(url, {**env, "SWEEPER_DASHBOARD_PASSWORD_FILE": str(secret)})
    try:
        assert http_status(f"{base}/api/studies") == 401
        assert http_status(f"{base}/api/studies", auth="sweeper:wrong") == 401
        assert http_status(f"{base}/api/studies", auth="sweeper:s3cret-pass") == 200
        assert http_status(f"{base}/healthz") == 200  # what probes ask, without the password
        assert http_status(f"{base}/healthz", method="POST") == 401
    finally:
        output = stop_dashboard(process)
    assert "s3cret-pass" not in output


def _regularizer_points(page) -> int:
    figure = page.locator(".js-plotly-plot", has_text="val_acc against dropout rate")
    if figure.count() == 0:
        return -1
    return figure.first.locator(".scatterlayer .point").count()


def _study_id(url: str, name: str) -> int:
    store = storage.connect(urls.resolve_url(url), create=False)
    try:
        return store.storage.get_study_id_from_name(name)
    finally:
        store.close()


def _best_trials_model_answers(page, base: str, url: str) -> int:
    """The dashboard's artifact list of the best trial, and the status its kept model's link answers."""
    study_id = _study_id(url, "reported")
    detail = page.request.get(f"{base}/api/studies/{study_id}").json()
    best = max((t for t in detail["trials"] if t["state"] == "Complete"), key=lambda t: t["values"][0])
    (artifact,) = best["artifacts"]
    assert artifact["filename"].endswith(".keras")
    return page.request.get(f"{base}/artifacts/{study_id}/{best['trial_id']}/{artifact['artifact_id']}").status


def test_dashboard_in_a_browser_shows_the_regularizer_chart_updating_live(filled) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI for the browser test and is missing at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package to run the browser test")
    from playwright.sync_api import sync_playwright

    url, path, env = filled
    process, base = start_dashboard(url, env)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        study_id = _study_id(url, "reported")  # without --allow-writes, nobody may change a study
        assert http_status(f"{base}/api/studies/{study_id}", "DELETE") == 403
        assert http_status(f"{base}/api/studies/{study_id}/rename", "POST") == 403
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=30) as response:
            assert json.load(response)["objective_names"] == ["val_acc"]  # not "Objective 0"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{base}/dashboard")
            page.get_by_text("reported").first.click()
            finished = sum(t.state in FINISHED for t in trials(url, "reported"))
            wait_for(
                lambda: _regularizer_points(page) == finished + 1, timeout=60, what="the chart's points"
            )  # +1: baseline star
            assert page.locator(".js-plotly-plot", has_text="Progress: the best val_acc so far").count() == 1
            assert _best_trials_model_answers(page, base, url) == 200
            page.screenshot(path=str(ARTIFACTS / "dashboard-before.png"), full_page=True)

            result = run_sweeper("worker", str(path), "--storage", url, "--n-trials", "1", env=env)
            assert result.returncode == 0, result.stderr
            wait_for(lambda: _regularizer_points(page) == finished + 2, timeout=90, what="the new trial on the chart")
            page.screenshot(path=str(ARTIFACTS / "dashboard-after.png"), full_page=True)
            browser.close()
    finally:
        stop_dashboard(process)
