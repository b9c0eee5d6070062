"""The fair race's measures: each side's pick judged by its cell's true value, over independent seeds.

A side's pick after k trials is the trial it would hand over then: its best by the value it told
Optuna (sweeper: the best epoch's val_acc; optuna-examples' script: the last epoch's). The pick
is judged by its cell's *true* value in the table (the cell's best epoch), never by what the side
saw, so a side that picks on a lucky or an unlucky number pays for it. Per run:

- regret: the best cell's true value minus the pick's, after the whole budget;
- epochs to near: the epochs spent when the pick first came within `NEAR` of the best cell;
- right group (sweeper's comparative answer): the pick's compared group is the best cell's.

Medians come with bootstrap 95% intervals and two sides on the same seeds are compared with a
paired sign test (`benchmarks.common`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.search_efficiency import Played, Table

NEAR = 0.005


@dataclass(frozen=True)
class Run:
    """One side's replayed search on one seed, with the table that judges it."""

    played: list[Played]
    table: Table

    def _pick(self, trials: Sequence[Played]) -> Played | None:
        told = [t for t in trials if t.value is not None]
        return max(told, key=lambda t: t.value or 0.0, default=None)  # the first of equal values, as Optuna's best

    def _truth(self, trials: Sequence[Played]) -> float:
        pick = self._pick(trials)
        return -math.inf if pick is None else self.table.true_value(pick.params)

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.played)

    def regret(self, epochs: float = math.inf) -> float:
        """The best cell's true value minus the pick's, among the trials finished within `epochs`."""
        spent, within = 0, []
        for trial in self.played:
            spent += trial.epochs
            if spent > epochs:
                break
            within.append(trial)
        return self.table.best_value() - self._truth(within)

    def epochs_to_near(self) -> float:
        best, spent = self.table.best_value(), 0
        for k, trial in enumerate(self.played, start=1):
            spent += trial.epochs
            if self._truth(self.played[:k]) >= best - NEAR:
                return spent
        return math.inf

    def right_group(self, by: str) -> bool:
        pick = self._pick(self.played)
        return pick is not None and pick.params[by] == self.table.best_cell()["config"][by]
