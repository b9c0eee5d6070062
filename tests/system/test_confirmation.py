"""The confirmation phase on real PostgreSQL: queued once, exact total, kill -9 included; never pruned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeper.storage.records import TrialRecord
from tests.conftest import QUICK_TRAINING, study_file, sweeper_main
from tests.fleet import FINISHED, WorkerProcess, assert_exact_budget, trials, wait_for

BUDGET = 4


def test_confirmation_runs_each_winner_again_and_the_total_stays_exact_through_a_kill(
    pg_url: str, cli_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = study_file(
        tmp_path,
        study={"name": "confirm", "budget": BUDGET},
        confirm={"seeds": 2},
        training=QUICK_TRAINING,
        pruner={"type": "none"},
    )
    first, victim = (WorkerProcess(path, pg_url, cli_env, tmp_path) for _ in range(2))

    def confirming_on_victim():
        return next(
            (t for t in trials(pg_url, "confirm") if t.state == TrialState.RUNNING
             and t.user_attrs.get("worker") == victim.name and TrialRecord.from_frozen(t).is_confirmation),
            None,
        )  # fmt: skip

    lost = wait_for(confirming_on_victim, what="a confirmation run on the victim")
    victim.kill_all()
    assert first.wait() == 0, first.log()

    stored = trials(pg_url, "confirm")
    queued = sum(
        TrialRecord.from_frozen(t).is_confirmation and t.system_attrs.get("failed_trial") is None for t in stored
    )
    assert_exact_budget(pg_url, "confirm", BUDGET + queued)
    assert (first.log() + victim.log()).count("confirmation trial(s) queued") == 1  # once, for the fleet
    [retry] = [t for t in stored if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state in FINISHED and TrialRecord.from_frozen(retry).is_confirmation
    assert TrialRecord.from_frozen(retry).confirms == TrialRecord.from_frozen(lost).confirms
    runs = [t for t in stored if TrialRecord.from_frozen(t).is_confirmation and t.state in FINISHED]
    assert all(t.state == TrialState.COMPLETE for t in runs)

    report = sweeper_main(capsys, "report", "confirm", "--storage", pg_url, "-f", "json")
    confirmed = json.loads(report.stdout)["confirmed"]
    assert confirmed and all(len(c["values"]) == 3 for c in confirmed)  # the original run and 2 seeds
    for entry in confirmed:
        low, high = entry["ci95"]
        assert low <= entry["mean"] <= high and entry["params"].keys() == {"dropout", "batchnorm", "learning_rate"}
    assert len(confirmed) < 2 or confirmed[0]["p_value"] is None or 0 <= confirmed[0]["p_value"] <= 1
    assert "Confirmed over 3 seeds" in json.loads(report.stdout)["answer"]


def test_a_confirmation_run_is_never_pruned(tmp_path: Path) -> None:
    import optuna

    from sweeper import studyfile
    from sweeper.fleet.trial_runner import should_stop

    spec = studyfile.load(study_file(tmp_path, pruner={"type": "threshold", "lower": 0.99, "n_warmup_steps": 0}))
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'x.db'}",
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=0.99),
    )
    params = {"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}
    study.enqueue_trial(params, user_attrs=TrialRecord(phase="confirm", confirms=0).to_attrs())
    study.enqueue_trial(params)
    rerun, search = study.ask(), study.ask()
    assert should_stop(search, spec, 0.2, 1) is True  # the pruner would stop it
    assert should_stop(rerun, spec, 0.2, 1) is False
