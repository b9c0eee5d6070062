"""Study files load into a validated spec; mistakes name the file and the key, without a traceback."""

from pathlib import Path

import pytest

from sweeper import studyfile
from sweeper.errors import StudyFileError
from tests.conftest import ROOT, run_sweeper


@pytest.mark.parametrize("name", ["cifar10-regularization", "smoke"])
def test_shipped_study_files_are_valid(name: str) -> None:
    spec = studyfile.load(ROOT / "studies" / f"{name}.toml")
    assert spec.name == name
    dists = spec.space.distributions()
    assert (dists["dropout"].low, dists["dropout"].high) == (0.2, 0.5)
    assert dists["batchnorm"].choices == (True, False)
    assert (dists["learning_rate"].low, dists["learning_rate"].high, dists["learning_rate"].log) == (1e-5, 1e-2, True)
    assert spec.baselines == [{"dropout": 0.2, "batchnorm": False, "learning_rate": 1e-4}]


def test_real_study_uses_the_tutorial_training() -> None:
    training = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml").training
    assert (training.epochs, training.batch_size, training.validation_split, training.split_seed) == (30, 32, 0.3, 777)
    assert training.max_train_images is None


def test_typo_names_file_key_and_suggestion(tmp_path: Path, cli_env: dict) -> None:
    text = (ROOT / "studies" / "smoke.toml").read_text().replace("epochs = 2", "epocs = 2")
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(StudyFileError, match=r"typo.toml: \[training\] epocs: unknown key \(did you mean 'epochs'\?\)"):
        studyfile.load(path)
    result = run_sweeper("worker", str(path), env=cli_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "epocs: unknown key" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "sweeper.db").exists()  # refused before touching any storage


SMOKE_TEXT = (ROOT / "studies" / "smoke.toml").read_text()


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "stop_grace_seconds = 3",
            "stop_grace_seconds = inf",
            r"\[fleet\] stop_grace_seconds: Input should be a finite number",
        ),
        ('type = "median"', 'type = "threshold"\nlower = nan', r"\[pruner\] lower: Input should be a finite number"),
        (
            "budget = 6",
            "budget = 1000000000000000000000",
            r"\[study\] budget: Input should be less than or equal to 1000000",
        ),
        (
            "stale_after_seconds = 4",
            "stale_after_seconds = 3",
            r"stale_after_seconds \(3\) must be at least 3 heartbeats plus 1 s \(4 with",
        ),
        (
            "poll_seconds = 0.5",
            "poll_seconds = 1e300",
            r"\[fleet\] poll_seconds: Input should be less than or equal to 3600",
        ),
        (
            "batch_size = 32",
            "batch_size = 32\nsteps_per_execution = 0",
            r"\[training\] steps_per_execution: must be \"auto\" or a whole number from 1 to 10000, not 0$",
        ),
    ],
    ids=["inf-grace", "nan-threshold", "huge-budget", "stale-below-three-beats", "huge-poll", "no-steps"],
)
def test_every_number_is_finite_and_bounded(old: str, new: str, message: str) -> None:
    assert old in SMOKE_TEXT
    text = SMOKE_TEXT.replace(old, new, 1).replace("n_startup_trials = 3\nn_warmup_steps = 1", "n_warmup_steps = 1")
    with pytest.raises(StudyFileError, match=message):
        studyfile.parse(text, source="smoke.toml")


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "dropout = 0.2\nbatchnorm = false",
            "dropout = 0.9\nbatchnorm = false",
            r"baselines\[0\].dropout = 0.9 lies outside",
        ),
        ("learning_rate = 1e-4", "learning_rate = 1", r"baselines\[0\].learning_rate = 1.0 lies outside"),
        ("choices = [true, false]", "choices = [true]", r"baselines\[0\].batchnorm = False lies outside"),
    ],
    ids=["dropout", "learning-rate", "batchnorm"],
)
def test_a_baseline_outside_the_search_space_is_refused(old: str, new: str, message: str) -> None:
    assert old in SMOKE_TEXT
    with pytest.raises(StudyFileError, match=message):
        studyfile.parse(SMOKE_TEXT.replace(old, new, 1))


def test_the_compared_groups_are_compare_by_else_the_reports_group_by_else_batch_normalization() -> None:
    tutorial = studyfile.load(ROOT / "studies" / "cifar10-regularization.toml")
    digits = studyfile.load(ROOT / "studies" / "digits-mlp.toml")  # no [compare]; [report] group_by
    smoke = studyfile.load(ROOT / "studies" / "smoke.toml")  # neither
    assert (tutorial.groups_by, digits.groups_by, smoke.groups_by) == ("batchnorm", "activation", "batchnorm")
    assert studyfile.groups_parameter({"compare": None, "report": {"x": None, "group_by": "units"}}) == "units"
