"""The study file's `[sampler]` and `[pruner]` sections; `sweeper.fleet.search` builds Optuna's from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sweeper.studyfile._strict import Strict as _Strict

SEED = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""What NumPy, scikit-learn and Keras take as a seed."""


class TPESampler(_Strict):
    type: Literal["tpe"]
    seed: SEED = 0
    n_startup_trials: Annotated[int, Field(ge=0)] = 10
    multivariate: bool = False
    """Model the parameters jointly (Optuna's multivariate TPE) rather than one by one."""


class RandomSampler(_Strict):
    type: Literal["random"]
    seed: SEED = 0


class NoPruner(_Strict):
    type: Literal["none"]


class MedianPruner(_Strict):
    type: Literal["median"]
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    n_warmup_steps: Annotated[int, Field(ge=0)] = 5


class HyperbandPruner(_Strict):
    type: Literal["hyperband"]
    min_resource: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 3


class SuccessiveHalvingPruner(_Strict):
    """Asynchronous successive halving (ASHA): Hyperband's most aggressive bracket on its own."""

    type: Literal["successive_halving"]
    min_resource: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    min_early_stopping_rate: Annotated[int, Field(ge=0)] = 0


class ThresholdPruner(_Strict):
    """Prunes every trial whose val_acc is below `lower` after the warm-up: for tests and demos."""

    type: Literal["threshold"]
    lower: float
    n_warmup_steps: Annotated[int, Field(ge=0)] = 0
