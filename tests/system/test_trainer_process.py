"""The warm training child: real child processes on the committed CIFAR-10 slice, replaced when spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.studyfile import Training
from sweeper.training import data
from sweeper.training.protocol import Done, Epoch, Job
from sweeper.training.trainer_process import TrainingProcess
from tests.conftest import FIXTURE_DATA


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data.prepare(FIXTURE_DATA, Training(max_train_images=200), tmp_path_factory.mktemp("cache"))


def _train(process: TrainingProcess, batch_size: int) -> tuple[int, dict, list[float]]:
    """One trial of one epoch, eager (no graph to build); the child's PID, its summary and its val_acc."""
    params = {"dropout": 0.2, "batchnorm": True, "learning_rate": 1e-3}
    process.start(Job(params, 1, batch_size, seed=1, run_eagerly=True))
    pid, val_acc = process.pid, []
    while True:
        message = process.receive(timeout=120)
        if isinstance(message, Done):
            return pid, message.summary, val_acc
        assert isinstance(message, Epoch), message
        val_acc.append(message.metric("val_acc"))
        process.reply(keep_going=True)


def test_a_warm_child_serves_trials_per_child_trials_and_one_whose_memory_grew_is_replaced_early(
    prepared: Path,
) -> None:
    # Three trials fill the first child (trials_per_child); the fourth, in a fresh child, gives the
    # same val_acc: nothing of one trial carries over into the next. The fifth's batches hold all 140
    # training images at once: its activations and gradients raise the child's peak memory by well
    # over 20 MB, so the sixth gets a new child although the second has run only two trials.
    process = TrainingProcess(prepared, trials_per_child=3, child_growth_mb=20)
    try:
        runs = [_train(process, size) for size in (32, 32, 32, 32, 256, 32)]
    finally:
        process.close()
    pids, summaries, curves = zip(*runs, strict=True)
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] != pids[5]
    assert curves[0] == curves[1] == curves[2] == curves[3]
    assert summaries[4]["child_peak_mb"] - summaries[3]["child_peak_mb"] >= 20, summaries
