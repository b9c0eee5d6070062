"""The pipe between worker and child: a user's model's metric names become sweeper's."""

from __future__ import annotations

import math

from sweeper.training.protocol import Epoch, canonical_metrics


def test_every_accuracy_name_is_recorded_as_acc_and_the_rest_left_out() -> None:
    logs = {"sparse_categorical_accuracy": 0.5, "val_sparse_categorical_accuracy": 0.4, "loss": 1.2,
            "val_loss": 1.3, "learning_rate": 0.001, "val_top5": 0.9}  # fmt: skip
    assert canonical_metrics(logs) == {"acc": 0.5, "val_acc": 0.4, "loss": 1.2, "val_loss": 1.3}


def test_the_first_of_two_accuracy_names_wins() -> None:
    assert canonical_metrics({"acc": 0.1, "accuracy": 0.9}) == {"acc": 0.1}


def test_a_missing_metric_reads_as_nan() -> None:
    epoch = Epoch(epoch=1, metrics={"val_acc": 0.5}, seconds=1.0)
    assert epoch.metric("val_acc") == 0.5 and math.isnan(epoch.metric("loss"))
