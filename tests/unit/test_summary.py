"""The report's data: best and baseline trials, the regularizer table and the answer sentence."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeper.reporting import summary

SPACE = {
    "dropout": FloatDistribution(0.2, 0.5),
    "batchnorm": CategoricalDistribution([True, False]),
    "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
}

STORED_SPACE = {  # as a worker stores the tutorial's space (`Space.dump`)
    "dropout": {"low": 0.2, "high": 0.5, "log": False},
    "batchnorm": {"choices": [True, False]},
    "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
}


def _trial(value: float, dropout: float, batchnorm: bool, lr: float, gap: float, *, state=TrialState.COMPLETE, **attrs):
    return create_trial(
        state=state,
        value=value,
        params={"dropout": dropout, "batchnorm": batchnorm, "learning_rate": lr},
        distributions=SPACE,
        user_attrs={"overfit_gap": gap, "best_epoch": 3, **attrs},
        intermediate_values={1: value} if state == TrialState.PRUNED else {},
    )


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="unit")
    study.set_user_attr("budget", 5)
    study.set_user_attr("spec", {"space": STORED_SPACE})
    study.add_trial(_trial(0.40, 0.25, False, 1e-3, 0.30, baseline=True))
    study.add_trial(_trial(0.55, 0.45, True, 6e-4, 0.05))
    study.add_trial(_trial(0.50, 0.30, True, 2e-3, 0.20))
    study.add_trial(
        _trial(0.60, 0.35, False, 1e-4, 0.10, state=TrialState.PRUNED, prune_reason="loss became nan at epoch 1")
    )
    return study


def test_best_is_the_best_complete_trial_and_the_baseline_is_described_from_its_parameters() -> None:
    content = summary.summary(_study(), "sqlite:///x.db")
    assert content["best"]["number"] == 1 and content["best"]["val_acc"] == 0.55  # the pruned 0.60 is not a result
    assert content["baseline"]["number"] == 0
    assert content["counts"]["complete"] == 3 and content["counts"]["pruned"] == 1 and content["budget"] == 5
    assert content["nonfinite_loss_trials"] == 1
    assert content["answer"].startswith(
        "Best val_acc 0.5500: batch normalization on, dropout 0.45, learning rate 0.0006"
    )
    assert (
        "the baseline (dropout 0.25, batch normalization off, learning rate 0.001) reached 0.4000" in content["answer"]
    )
    assert (
        "Least overfitting among the groups whose median val_acc is within 0.03 of the best group's (0.5500): "
        "batch normalization on with dropout 0.40-0.50 (median gap 0.050, median val_acc 0.5500)." in content["answer"]
    )


def test_a_group_that_barely_learned_is_not_named_least_overfitting() -> None:
    study = optuna.create_study(direction="maximize", study_name="underfit")
    study.set_user_attr("spec", {"space": STORED_SPACE})
    for value, dropout, batchnorm, gap in [
        (0.56, 0.45, True, 0.08), (0.55, 0.25, True, 0.12), (0.20, 0.45, False, 0.01), (0.54, 0.25, False, 0.10)
    ]:  # fmt: skip
        study.add_trial(_trial(value, dropout, batchnorm, 1e-3, gap))
    answer = summary.summary(study, "x")["answer"]
    assert (
        "(0.5600): batch normalization on with dropout 0.40-0.50 (median gap 0.080, median val_acc 0.5600)." in answer
    )
    assert (
        "Batch normalization off with dropout 0.40-0.50 has a smaller median gap (0.010) "
        "but learned less (median val_acc 0.2000)." in answer
    )


def test_regularizer_table_bins_dropout_by_the_study_space_per_batchnorm() -> None:
    table = summary.summary(_study(), "x")["regularizers"]
    assert [row["dropout"] for row in table] == ["0.20-0.30", "0.30-0.40", "0.40-0.50"] * 2
    by_key = {(row["batchnorm"], row["dropout"]): row for row in table}
    assert by_key[(False, "0.20-0.30")]["trials"] == 1 and by_key[(False, "0.20-0.30")]["best_val_acc"] == 0.40
    assert by_key[(True, "0.30-0.40")]["trials"] == 1 and by_key[(True, "0.30-0.40")]["median_gap"] == 0.20
    assert by_key[(True, "0.40-0.50")]["best_val_acc"] == 0.55  # the top edge belongs to the last bin
    assert sum(row["trials"] for row in table) == 3  # complete trials only, once there are any


def test_an_empty_study_has_no_best_and_says_so() -> None:
    content = summary.summary(optuna.create_study(direction="maximize"), "x")
    assert content["best"] is None and content["answer"] == "No finished trials yet."
