"""How sure the answer is: confirmed configurations over seeds, their lead, and the trade-off front.

Means carry a 95% confidence interval from Student's t over the seeds (the original run and its
confirmation runs); a lead is tested with Welch's t-test (unequal variances), both from scipy.
Before confirmation, the only uncertainty the report can state is a single run's: the binomial
standard error of one val_acc on the validation split.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Estimate:
    values: list[float]
    mean: float
    ci95: tuple[float, float] | None
    """None with a single value: no interval from one run."""

    @property
    def half_width(self) -> float | None:
        return None if self.ci95 is None else (self.ci95[1] - self.ci95[0]) / 2


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and Student's t 95% interval of `values` (seeds of one configuration)."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(values, mean, None)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    if sem == 0:
        return Estimate(values, mean, (mean, mean))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return Estimate(values, mean, (float(low), float(high)))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value that `a` and `b` share a mean (Welch's t-test); None with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def single_run_se(val_acc: float, val_images: int) -> float:
    """The standard error of one accuracy measured on `val_images` images (binomial)."""
    return math.sqrt(val_acc * (1 - val_acc) / val_images)


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Of (key, val_acc, gap) points, the keys none beats on both (higher val_acc, lower gap), by gap."""
    front, best_acc = [], -math.inf
    for key, acc, _gap in sorted(points, key=lambda p: (p[2], -p[1])):
        if acc > best_acc:
            front.append(key)
            best_acc = acc
    return front
