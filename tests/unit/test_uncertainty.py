"""The statistics behind the confirmed answer, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from sweeper.reporting import uncertainty

T_975_DF2 = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom (any t table)


def test_mean_and_95_interval_over_three_seeds() -> None:
    est = uncertainty.estimate([0.60, 0.62, 0.64])
    sem = 0.02 / math.sqrt(3)  # sample sd 0.02
    assert est.mean == pytest.approx(0.62)
    assert est.ci95 == pytest.approx((0.62 - T_975_DF2 * sem, 0.62 + T_975_DF2 * sem), abs=1e-6)
    assert est.half_width == pytest.approx(0.049683, abs=1e-6)


def test_one_value_has_no_interval_and_equal_values_a_point() -> None:
    assert uncertainty.estimate([0.5]).ci95 is None
    assert uncertainty.estimate([0.5, 0.5]).ci95 == (0.5, 0.5)


def test_welch_p_value() -> None:
    # Equal sizes and variances: t = 0.1 / sqrt(2 * 0.0004 / 3) = 6.1237 on 4 degrees of freedom;
    # two-sided p = 2 * (1 - F_t4(6.1237)), from the t distribution's closed form for 4 df.
    t = 0.1 / math.sqrt(2 * 0.0004 / 3)
    one_sided = 0.5 - 0.5 * (t / math.sqrt(4 + t * t)) * (1 + 2 / (4 + t * t))  # 1 - CDF for df = 4
    p = uncertainty.welch_p([0.60, 0.62, 0.64], [0.50, 0.52, 0.54])
    assert p == pytest.approx(2 * one_sided, rel=1e-6)
    assert uncertainty.welch_p([0.6], [0.5, 0.52]) is None


def test_single_run_standard_error_is_binomial() -> None:
    assert uncertainty.single_run_se(0.6, 1551) == pytest.approx(math.sqrt(0.6 * 0.4 / 1551))


def test_pareto_front_keeps_what_nothing_beats_on_both() -> None:
    points = [(1, 0.60, 0.10), (2, 0.65, 0.20), (3, 0.55, 0.15), (4, 0.70, 0.30), (5, 0.58, 0.05), (6, 0.64, 0.20)]
    assert uncertainty.pareto_front(points) == [5, 1, 2, 4]
