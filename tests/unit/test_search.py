"""The study's sampler and pruner, and where a pruner can decide."""

from __future__ import annotations

import optuna
import pytest

from sweeper import studyfile
from sweeper.fleet import search
from sweeper.studyfile.search_sections import RandomSampler
from tests.conftest import ROOT

REAL = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")


def _with_pruner(pruner: dict) -> studyfile.StudySpec:
    data = REAL.model_dump()
    data["pruner"] = pruner
    return studyfile.StudySpec.model_validate(data)


def test_the_real_study_prunes_with_hyperband_at_its_rungs_only() -> None:
    pruner = search.make_pruner(REAL)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert [epoch for epoch in range(1, REAL.training.epochs + 1) if search.can_prune_at(REAL, epoch)] == [8, 16]


@pytest.mark.parametrize(
    "pruner, epochs",
    [
        ({"type": "successive_halving", "min_resource": 1, "reduction_factor": 3}, [1, 3, 9, 27]),
        ({"type": "median", "n_startup_trials": 3, "n_warmup_steps": 28}, [28, 29, 30]),
        ({"type": "threshold", "lower": 0.2, "n_warmup_steps": 29}, [29, 30]),
        ({"type": "none"}, []),
    ],
    ids=["asha", "median", "threshold", "none"],
)
def test_can_prune_at_names_every_epoch_where_the_pruner_may_stop_a_trial(pruner: dict, epochs: list[int]) -> None:
    spec = _with_pruner(pruner)
    assert [e for e in range(1, 31) if search.can_prune_at(spec, e)] == epochs


def test_each_trial_draws_from_its_own_seed_of_study_seed_and_number() -> None:
    def draw(number: int) -> dict:
        study = optuna.create_study(direction="maximize", sampler=search.make_sampler(REAL))
        for _ in range(number + 1):
            trial = study.ask()
        search.seed_trial(study.sampler, REAL, trial.number)
        return search.suggest(trial, REAL)

    assert draw(2) == draw(2) != draw(3)
    assert set(draw(0)) == {"dropout", "batchnorm", "learning_rate"}


def _random_search(seed: int, trials: int) -> list[dict]:
    spec = REAL.model_copy(update={"sampler": RandomSampler(type="random", seed=seed)})
    study = optuna.create_study(direction="maximize", sampler=search.make_sampler(spec))
    drawn = []
    for _ in range(trials):
        trial = study.ask()
        search.seed_trial(study.sampler, spec, trial.number)
        drawn.append(search.suggest(trial, spec))
        study.tell(trial, 0.5)
    return drawn


def test_two_study_seeds_draw_different_trial_states() -> None:
    """With seed + trial number, seeds s and s+1 shared all but one trial's draws (the fair race's
    seeds were not independent); from (seed, number) through SeedSequence they share none."""
    seeds = {search.trial_seed(study_seed, number) for study_seed in (0, 1) for number in range(60)}
    assert len(seeds) == 120
    first, second = _random_search(0, 20), _random_search(1, 20)
    shared = [p for p in first if p in second]
    assert not shared, shared
    assert _random_search(0, 20) == first  # and a seed still repeats itself


def test_params_print_on_one_short_line() -> None:
    assert search.format_params({"dropout": 0.31234, "batchnorm": True, "learning_rate": 0.000123}) == (
        "dropout=0.312 batchnorm=True learning_rate=0.000123"
    )
