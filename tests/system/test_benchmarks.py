"""Every benchmark runs in its smallest mode and writes its result file (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_DATA, ROOT


def _run(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture
def bench_env(pg_server: str, cache_dir: Path, results_dir: Path) -> dict:
    return {**os.environ, "SWEEPER_BENCH_POSTGRES_URL": pg_server, "SWEEPER_DATA_DIR": str(FIXTURE_DATA),
            "SWEEPER_CACHE_DIR": str(cache_dir), "TF_CPP_MIN_LOG_LEVEL": "2",
            "SWEEPER_BENCH_RESULTS": str(results_dir)}  # fmt: skip


@pytest.fixture
def result(results_dir: Path):
    return lambda name, mode="quick": json.loads((results_dir / f"{name}-{mode}.json").read_text())


def test_trainer_overhead_quick(bench_env: dict, result) -> None:
    _run("trainer_overhead", "--quick", "--rounds", "1", "--trials", "1", "2", env=bench_env)
    written = result("trainer_overhead")
    assert written["summary"]["throughput_ratio"] > 0 and [row["trials"] for row in written["rows"]] == [1, 1, 2]
    assert written["summary"]["worker_startup_seconds"] > 0
    assert written["machine"]["cores"] >= 1


def test_storage_cost_quick(bench_env: dict, result) -> None:
    _run("storage_cost", "--quick", env=bench_env)
    summary = result("storage_cost")["summary"]
    assert summary["postgresql"]["ms_per_trial_large"] > 0 and summary["sqlite"]["ms_per_trial_large"] > 0


def test_storage_phases_quick(bench_env: dict, result) -> None:
    _run("storage_phases", "--quick", env=bench_env)
    written = result("storage_phases")
    phases = {row["phase"]: row for row in written["rows"]}
    assert phases["take a trial (what study.ask() did)"]["statements/trial"] > 0
    assert (
        phases["count the budget"]["statements/trial"] > 0
        and phases["tell (writes the result)"]["statements/trial"] > 0
    )
    assert written["summary"]["statements_per_trial"] == pytest.approx(
        sum(row["statements/trial"] for row in written["rows"])
    )


def test_worker_scaling_quick(bench_env: dict, result) -> None:
    _run("worker_scaling", "--quick", "--trials-per-worker", "2", "--epoch-seconds", "0.1", env=bench_env)
    summary = result("worker_scaling")["summary"]
    assert summary["exact_budget_everywhere"] is True


def test_search_efficiency_on_a_tiny_real_table(bench_env: dict, result, tmp_path: Path) -> None:
    table = tmp_path / "table.jsonl"
    _run("build_table", "--quick", "--table", str(table), env=bench_env)
    assert len(table.read_text().splitlines()) == 2
    _run("build_table", "--quick", "--table", str(table), env=bench_env)  # resumes: nothing to add
    assert len(table.read_text().splitlines()) == 2
    _run("search_efficiency", "--quick", "--compare", "--table", str(table), env=bench_env)
    written = result("search_efficiency", "quick-with-compare")
    rows, summary = written["rows"], written["summary"]
    assert len(rows) == 3 and all(0 < r["random best"] <= 1 for r in rows)
    assert len(summary["candidates"]) > 1 and all(c["median study epochs"] > 0 for c in summary["candidates"])


def test_head_to_head_replays_both_sides_on_the_committed_table(bench_env: dict, result) -> None:
    _run("head_to_head", "replay", "--quick", env=bench_env)
    rows, summary = result("head_to_head")["rows"], result("head_to_head")["summary"]
    assert len(rows) == 3 * 2 * 3  # seeds x budgets x sides
    assert set(summary["budgets"]) == {"20", "60"}
    for row in rows:
        assert 0 <= row["regret"] < summary["best_cell_value"] and row["epochs"] > 0
        assert row["epochs to near"] == float("inf") or row["epochs to near"] <= row["epochs"]
        if "equal epochs" in row:  # a peer: both sides judged on the same epochs
            study = next(
                r
                for r in rows
                if r["side"] == "sweeper study" and (r["seed"], r["trials"]) == (row["seed"], row["trials"])
            )
            assert row["equal epochs"] == min(row["epochs"], study["epochs"])
            assert (
                row["regret at equal epochs"] >= row["regret"]
                and row["study regret at equal epochs"] >= study["regret"]
            )


def test_gpu_check_runs_its_packed_sweeps_on_the_cpu(bench_env: dict, tmp_path: Path) -> None:
    _run("gpu_check", "run", "--cpu", "--workers", "1", "--trials-per-worker", "3", "--before-after",
         "--out", str(tmp_path), env=bench_env)  # fmt: skip
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["ok"] is True and written["backend"] == "jax"
    assert written["reference_images_per_second_end_to_end"] > 0
    assert [(p["workers"], p["side"]) for p in written["packings"]] == [(1, "before"), (1, "after")]
    for packing in written["packings"]:
        assert packing["exact_budget"] and packing["finished"] == 3 * packing["workers"]
        assert packing["devices"] == ["cpu"] and len(packing["gpu_peak_mb_per_worker"]) == packing["workers"]
        assert packing["images_per_second_summed_warm_epochs"] > packing["images_per_second_end_to_end"] > 0
        assert packing["fixed_cost_first_trial_seconds"] is not None and packing["gap_between_trials_seconds"] >= 0
        assert packing["data_on_device"] == [False]  # auto: not on a CPU
    before, after = written["packings"]  # the study's seeded sampler draws one architecture twice in 3 trials
    assert before["compilations_later_trials"] and min(before["compilations_later_trials"]) > 0
    assert after["compilations_later_trials"] and set(after["compilations_later_trials"]) == {0}


def test_training_step_times_each_setting_on_jax(bench_env: dict, result) -> None:
    _run("training_step", "--quick", "--backends", "jax", env=bench_env)
    written = result("training_step")
    settings = [(row["steps_per_execution"], row["data"]) for row in written["rows"]]
    assert sorted(settings) == [(1, "device"), (1, "host"), (4, "device"), (4, "host")]
    assert all(row["images_per_s"] > 0 and row["first_epoch_s"] > 0 for row in written["rows"])
    assert written["summary"]["jax steps=1 data=host"]["ratio_median"] == 1


def test_pgbouncer_scale_quick(bench_env: dict, result) -> None:
    if os.geteuid() != 0:
        pytest.skip("PgBouncer runs as the postgres user, which needs root")
    _run("pgbouncer_scale", "--quick", env=bench_env)
    written = result("pgbouncer_scale")
    sides = {row["side"]: row for row in written["rows"]}
    assert set(sides) == {"pgbouncer", "direct"}
    assert 0 < sides["pgbouncer"]["peak server connections"] <= written["summary"]["pool_size"]
    assert written["summary"]["pgbouncer_exact_budget_everywhere"] is True
    for row in sides.values():  # the study had 100 trials of history; every claim and look timed under the lock
        assert row["history"] == 100 and row["finished"] == row["budget"] == 100 + 8 * 2
        assert row["claims"] >= 16 and 0 < row["claim hold p50 ms"] <= row["claim hold p99 ms"]
        assert row["ceiling at 210-s trials"] > 0
