"""What to try next and when to give up on a trial: the study file's sampler and pruner."""

from __future__ import annotations

import optuna

from sweeper.studyfile import StudySpec


def make_sampler(spec: StudySpec, trial_number: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded by the study's seed plus the trial number.

    Workers that share a study then never draw the same random start-up points, and a trial's
    suggestion depends on its number and the study's history, not on which worker asked.
    """
    seed = spec.sampler.seed + trial_number
    if spec.sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=spec.sampler.n_startup_trials, constant_liar=True
    )


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    pruner = spec.pruner
    if pruner.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps)
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource,
            max_resource=spec.training.epochs,
            reduction_factor=pruner.reduction_factor,
        )
    if pruner.type == "threshold":
        return optuna.pruners.ThresholdPruner(lower=pruner.lower, n_warmup_steps=pruner.n_warmup_steps)
    return optuna.pruners.NopPruner()
