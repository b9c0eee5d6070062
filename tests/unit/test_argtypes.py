"""The command line's argument types: a bad value is argparse's one-line error, naming it."""

from __future__ import annotations

import argparse

import pytest

from sweeper.cli import _argtypes


def test_good_values_pass() -> None:
    assert _argtypes.port("8080") == 8080
    assert _argtypes.positive_seconds("0.5") == 0.5
    assert _argtypes.positive_int("3") == 3


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (_argtypes.port, "65536", "at most 65535"),
        (_argtypes.port, "0", "at least 1"),
        (_argtypes.positive_seconds, "nan", "finite number of seconds above 0"),
        (_argtypes.positive_seconds, "inf", "finite number of seconds above 0"),
        (_argtypes.positive_seconds, "0", "finite number of seconds above 0"),
        (_argtypes.positive_seconds, "soon", "expected a number of seconds"),
        (_argtypes.positive_int, "-2", "at least 1"),
        (_argtypes.positive_int, "2.5", "expected a whole number"),
        (_argtypes.gpu_choice, "gpu7", "gpu7"),
    ],
)
def test_bad_values_say_why(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)
