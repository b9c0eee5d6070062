"""The warm training child: real child processes on the committed CIFAR-10 slice, replaced when spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.studyfile import Training
from sweeper.training import backends, data
from sweeper.training.protocol import Done, Epoch, Job
from sweeper.training.trainer_process import TrainingProcess
from tests.conftest import FIXTURE_DATA


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data.prepare(FIXTURE_DATA, Training(max_train_images=200), tmp_path_factory.mktemp("cache"))


def _run(process: TrainingProcess, job: Job) -> tuple[int, dict, list[dict[str, float]]]:
    """One trial to its end: the child's PID, its summary and each epoch's metrics."""
    process.start(job)
    pid, curve = process.pid, []
    while True:
        message = process.receive(timeout=600)
        if isinstance(message, Done):
            return pid, message.summary, curve
        assert isinstance(message, Epoch), message
        curve.append(message.metrics)
        process.reply(keep_going=True)


def _train(process: TrainingProcess, batch_size: int) -> tuple[int, dict, list[float]]:
    """One trial of one epoch, eager (no graph to build); the child's PID, its summary and its val_acc."""
    params = {"dropout": 0.2, "batchnorm": True, "learning_rate": 1e-3}
    pid, summary, curve = _run(process, Job(params, 1, batch_size, seed=1, run_eagerly=True))
    return pid, summary, [epoch["val_acc"] for epoch in curve]


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


def test_a_warm_childs_next_trial_of_an_architecture_compiles_nothing_and_trains_as_a_fresh_child(
    prepared: Path,
) -> None:
    # JAX (XLA), as on the GPUs: it reports every compilation. The second trial changes the dropout
    # rate and the learning rate, which only variables hold, so the warm child's compiled step
    # serves it; re-initialized from the trial's seed, it learns exactly as in a new child.
    first = Job({"dropout": 0.25, "batchnorm": True, "learning_rate": 1e-3}, 2, 32, seed=3)
    second = Job({"dropout": 0.45, "batchnorm": True, "learning_rate": 3e-4}, 2, 32, seed=4)
    env = {"KERAS_BACKEND": "jax"}
    warm = TrainingProcess(prepared, trials_per_child=10, child_growth_mb=10_000, env=env)
    fresh = TrainingProcess(prepared, trials_per_child=10, child_growth_mb=10_000, env=env)
    try:
        first_pid, compiled, _ = _run(warm, first)
        warm_pid, reused, warm_curve = _run(warm, second)
        _, fresh_summary, fresh_curve = _run(fresh, second)
    finally:
        warm.close()
        fresh.close()

    assert first_pid == warm_pid
    assert compiled["compilations"] > 0 and not compiled["model_reused"]
    assert reused["compilations"] == 0 and reused["model_reused"], reused
    assert fresh_summary["compilations"] > 0
    assert [sorted(epoch) for epoch in warm_curve] == [sorted(epoch) for epoch in fresh_curve]
    for warm_epoch, fresh_epoch in zip(warm_curve, fresh_curve, strict=True):
        assert warm_epoch == pytest.approx(fresh_epoch, rel=1e-5, abs=1e-6), (warm_curve, fresh_curve)


def test_a_new_child_on_the_host_loads_what_another_compiled_from_the_shared_cache(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two children in turn, as two workers packed on one GPU or a replaced child: the second finds
    # the first's XLA programs in the host's compilation cache and compiles (almost) nothing.
    monkeypatch.setenv("SWEEPER_COMPILE_CACHE_DIR", str(tmp_path / "compiled"))
    env = {**backends.child_env("jax", None, 1), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    job = Job({"dropout": 0.3, "batchnorm": False, "learning_rate": 1e-3}, 1, 32, seed=5)
    compilations = []
    for _ in range(2):
        child = TrainingProcess(prepared, trials_per_child=10, child_growth_mb=10_000, env=env)
        try:
            compilations.append(_run(child, job)[1]["compilations"])
        finally:
            child.close()

    assert any((tmp_path / "compiled").iterdir()), "the first child filled the cache"
    assert compilations[1] < compilations[0] / 2, compilations


def test_data_kept_on_the_device_trains_as_from_host_arrays_and_a_warm_trial_compiles_no_gather(
    prepared: Path,
) -> None:
    # JAX on the CPU, told to keep the data on the device as it does on a GPU: each batch is gathered
    # there in the order the host arrays' batches would have had, so the curve is the host path's;
    # the gathers compiled in the first trial serve the next one.
    first = Job({"dropout": 0.3, "batchnorm": False, "learning_rate": 1e-3}, 2, 32, seed=6)
    second = Job({"dropout": 0.4, "batchnorm": False, "learning_rate": 5e-4}, 2, 32, seed=7)
    on_device = TrainingProcess(prepared, trials_per_child=10, child_growth_mb=10_000,
                                env={"KERAS_BACKEND": "jax", "SWEEPER_DATA_ON_DEVICE": "1"})  # fmt: skip
    on_host = TrainingProcess(prepared, trials_per_child=10, child_growth_mb=10_000,
                              env={"KERAS_BACKEND": "jax", "SWEEPER_DATA_ON_DEVICE": "0"})  # fmt: skip
    try:
        _run(on_device, first)
        _, device_summary, device_curve = _run(on_device, second)
        _, host_summary, host_curve = _run(on_host, second)
    finally:
        on_device.close()
        on_host.close()

    assert device_summary["data_on_device"] and not host_summary["data_on_device"]
    assert device_summary["compilations"] == 0, device_summary
    for device_epoch, host_epoch in zip(device_curve, host_curve, strict=True):
        assert device_epoch == pytest.approx(host_epoch, rel=1e-5, abs=1e-6), (device_curve, host_curve)
