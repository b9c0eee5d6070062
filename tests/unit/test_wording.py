"""Parameters in words: the tutorial's three as the tutorial says them, others as `name value`."""

from __future__ import annotations

from sweeper.reporting.wording import describe, describe_params, on_off


def test_the_tutorials_parameters_read_as_the_tutorial_says_them() -> None:
    assert describe("batchnorm", True) == "batch normalization on"
    assert describe("dropout", 0.2834) == "dropout 0.28"
    assert describe("learning_rate", 0.001534) == "learning rate 0.0015"


def test_other_parameters_and_unknown_values() -> None:
    assert describe("units", 128) == "units 128"
    assert describe("l2", 0.000123456) == "l2 0.000123"
    assert describe("dropout", None) == "dropout ?" and on_off(None) == "?"


def test_the_compared_group_leads() -> None:
    params = {"dropout": 0.3, "batchnorm": False, "learning_rate": 0.01}
    assert describe_params(params, "batchnorm") == "batch normalization off, dropout 0.30, learning rate 0.01"
    assert describe_params(params).startswith("dropout 0.30")
