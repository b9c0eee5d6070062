"""Many workers, one study: exact budget, recovery from kills and stops, isolation, GPU slots.

Real PostgreSQL, real worker processes, real signals, smoke trials on real CIFAR-10 images.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import TrialState

from sweeper import cli, studyfile
from tests.conftest import QUICK_TRAINING, study_file
from tests.fleet import (
    FINISHED,
    WorkerProcess,
    assert_exact_budget,
    running_trial_of,
    trials,
    wait_for,
)

TRIAL_ATTRS = {
    "history", "best_epoch", "best_val_acc", "final_val_acc", "train_acc_at_best", "overfit_gap",
    "train_seconds", "images_per_second", "seed", "worker", "host", "gpu",
}  # fmt: skip


def _fleet_study(tmp_path: Path, name: str, budget: int, **fleet: object) -> Path:
    """Quick trials; a worker's first still lasts through its training child's start, long enough to catch."""
    return study_file(
        tmp_path, study={"name": name, "budget": budget}, training=QUICK_TRAINING, **({"fleet": fleet} if fleet else {})
    )


@pytest.mark.parametrize("throwaway_pg", [{"max_connections": 20}], indirect=True)
def test_four_workers_from_four_shells_meet_the_budget_exactly_within_max_connections(
    throwaway_pg, cli_env, tmp_path, capsys
) -> None:
    url = throwaway_pg.url
    path = _fleet_study(tmp_path, "four", 8)
    workers = [WorkerProcess(path, url, cli_env, tmp_path) for _ in range(4)]
    peak = 0
    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sqlalchemy.pool.NullPool
    )
    count = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
    while any(w.process.poll() is None for w in workers):
        assert cli.main(["studies", "--storage", url]) == 0  # a user watching the study in a loop
        with engine.connect() as connection:
            peak = max(peak, connection.execute(count).scalar())
        _until_exit(workers[0], 1)
    engine.dispose()
    assert "four" in capsys.readouterr().out
    codes = [w.wait() for w in workers]
    logs = "\n".join(w.log() for w in workers)
    assert codes == [0, 0, 0, 0], logs
    assert "too many clients" not in logs and "Traceback" not in logs
    assert peak < 20 - 3  # max_connections less PostgreSQL's reserved superuser slots
    finished = [t for t in assert_exact_budget(url, "four", 8) if t.state in FINISHED]
    assert len({t.user_attrs["worker"] for t in finished}) >= 2
    assert logs.count("started:") >= 8 and "[8/8 finished]" in logs
    spec = studyfile.load(path)
    space = spec.space.distributions()
    for trial in finished:  # each trial's record, whichever worker ran it
        assert 0 <= trial.value <= 1 and set(trial.params) == set(space)
        for name in space:
            assert getattr(spec.space, name).contains(trial.params[name]), (name, trial.params)
        assert TRIAL_ATTRS <= set(trial.user_attrs), trial.user_attrs.keys()
        history = trial.user_attrs["history"]
        assert set(history) == {"acc", "loss", "val_acc", "val_loss", "epoch_seconds"}
        assert len(history["val_acc"]) == len(trial.intermediate_values)
        assert max(history["val_acc"]) == trial.user_attrs["best_val_acc"]
        last_or_best = history["val_acc"][-1] if trial.state == TrialState.PRUNED else max(history["val_acc"])
        assert trial.value == last_or_best  # a pruned trial keeps Optuna's last reported value
        assert trial.user_attrs["images_per_second"] > 0 and trial.user_attrs["run_eagerly"] is True
    assert [t.params for t in finished if t.user_attrs.get("baseline")] == spec.baselines  # enqueued once


def test_a_killed_child_fails_its_trial_and_a_killed_worker_is_reaped_and_retried(pg_url, cli_env, tmp_path) -> None:
    # First the training child dies (as the OOM killer would do it): its trial fails with the reason
    # and the worker goes on to its next trial in a fresh child. Then the whole worker dies (kill -9,
    # its child too): the next worker to start, the same one restarted or another host's, reaps that
    # trial once its heartbeat is stale and retries it with the same parameters. A live worker
    # reaping a frozen one's trial is the frozen-worker test below.
    path = _fleet_study(tmp_path, "kill9", 3)
    victim = WorkerProcess(path, pg_url, cli_env, tmp_path)
    first = wait_for(lambda: running_trial_of(pg_url, "kill9", victim), what="a trial on the victim")
    os.kill(wait_for(victim.training_child, what="the training child"), signal.SIGKILL)

    def next_trial():
        trial = running_trial_of(pg_url, "kill9", victim)
        return trial if trial and trial.number != first.number else None

    lost = wait_for(next_trial, what="the victim's next trial")
    victim.kill_all()
    restarted = WorkerProcess(path, pg_url, cli_env, tmp_path)
    assert restarted.wait() == 0, restarted.log()
    all_trials = assert_exact_budget(pg_url, "kill9", 3)
    by_number = {t.number: t for t in all_trials}
    assert by_number[first.number].state == TrialState.FAIL
    assert by_number[first.number].user_attrs["fail_reason"] == "training process killed by SIGKILL (out of memory?)"
    assert by_number[lost.number].state == TrialState.FAIL
    [retry] = [t for t in all_trials if lost.number in RetryFailedTrialCallback.retry_history(t)]
    assert retry.state in FINISHED and retry.params == lost.params


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_ends_the_trial_cleanly_within_the_grace(pg_url, cli_env, tmp_path, signum) -> None:
    # Docker's default grace. Within it the worker records the trial and exits by itself; past it
    # the worker's own watchdog exits and says so. Which one happened is the worker's own account,
    # so the test holds on a loaded machine, where a wall-clock bound would measure the load.
    path = _fleet_study(tmp_path, "stop", 3, stop_grace_seconds=10)
    worker = WorkerProcess(path, pg_url, cli_env, tmp_path)
    stopped = wait_for(lambda: running_trial_of(pg_url, "stop", worker), what="a running trial")
    wait_for(worker.training_child, what="the training child")
    worker.signal(signum)
    assert worker.wait(timeout=60) == 0, worker.log()
    assert f"stopped ({signal.Signals(signum).name})" in worker.log()
    assert "did not answer within the stop grace" not in worker.log()
    all_trials = trials(pg_url, "stop")
    assert [t.state for t in all_trials].count(TrialState.RUNNING) == 0
    trial = next(t for t in all_trials if t.number == stopped.number)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == f"worker stopped ({signal.Signals(signum).name})"
    [retry] = [t for t in all_trials if t.system_attrs.get("failed_trial") == stopped.number]
    assert retry.state == TrialState.WAITING and retry.system_attrs["fixed_params"] == stopped.params
    assert "Traceback" not in worker.log()


def _until_exit(worker: WorkerProcess, seconds: float) -> None:
    """Wait up to `seconds` for the worker to exit: a watching loop's pace that ends with the worker."""
    try:
        worker.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def _rss_kib(pid: int) -> int | None:
    """The process's resident memory, or None once it has exited: a zombie not yet waited for
    has no VmRSS (status read once, so the answer is one moment's)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next((line.split()[1] for line in lines if line.startswith("VmRSS:")), None)
    return int(rss) if rss is not None else None


def test_worker_memory_does_not_grow_with_trials(pg_url, cli_env, tmp_path) -> None:
    path = study_file(
        tmp_path, study={"name": "memory", "budget": 12},
        training={**QUICK_TRAINING, "max_train_images": 10, "epochs": 1}, pruner={"type": "none"}, fleet={"trials_per_child": 25},
    )  # fmt: skip
    worker = WorkerProcess(path, pg_url, cli_env, tmp_path)
    rss: dict[int, int] = {}  # trials finished -> the worker's memory then
    while worker.process.poll() is None:
        done = sum(t.state in FINISHED for t in trials(pg_url, "memory"))
        kib = _rss_kib(worker.process.pid) if done >= 3 and (not rss or done >= 9) else None
        if kib is not None:  # the first look after 3 trials, and every look from 9 on, while it runs
            rss[done] = kib
        _until_exit(worker, 0.2)
    assert worker.wait() == 0, worker.log()
    early, late = min(rss, default=0), max(rss, default=0)
    assert early < 9 <= late, rss  # looked at least once early and once late, however busy the machine
    assert rss[late] <= 1.2 * rss[early], rss


def test_gpu_slots_give_each_worker_its_own_device(pg_url, cli_env, tmp_path) -> None:
    # One GPU: the first worker claims it, the second falls back to the CPU; each trial's child saw
    # only its worker's device. How claims spread over several GPUs: tests/unit/test_gpus.py.
    env = {**cli_env, "SWEEPER_GPU_COUNT": "1", "SWEEPER_GPU_LOCK_DIR": str(tmp_path / "locks")}
    path = _fleet_study(tmp_path, "gpus", 2)
    first = WorkerProcess(path, pg_url, env, tmp_path, "--gpu", "auto", "--n-trials", "1")
    wait_for(lambda: "claimed GPU" in first.log(), what="the GPU claim")
    second = WorkerProcess(path, pg_url, env, tmp_path, "--gpu", "auto", "--gpu-fallback", "cpu", "--n-trials", "1")
    assert [first.wait(), second.wait()] == [0, 0], first.log() + second.log()
    seen = {
        t.user_attrs["worker"]: (t.user_attrs["cuda_visible_devices"], t.user_attrs["gpu"])
        for t in trials(pg_url, "gpus")
    }
    assert seen == {first.name: ("0", "0"), second.name: ("-1", "none")}
    assert "training on the CPU" in second.log()


def test_a_frozen_worker_whose_trial_was_reaped_drops_it_and_carries_on(pg_url, cli_env, tmp_path) -> None:
    path = _fleet_study(tmp_path, "frozen", 3)
    frozen = WorkerProcess(path, pg_url, cli_env, tmp_path)
    trial = wait_for(lambda: running_trial_of(pg_url, "frozen", frozen), what="the first worker's trial")
    frozen.signal(signal.SIGSTOP)  # heartbeat thread included: the whole worker stops, as on a frozen host
    try:
        other = WorkerProcess(path, pg_url, cli_env, tmp_path)
        wait_for(lambda: next(t for t in trials(pg_url, "frozen") if t.number == trial.number).state == TrialState.FAIL,
                 what="the frozen worker's trial to be reaped")  # fmt: skip
    finally:
        frozen.signal(signal.SIGCONT)
    assert [frozen.wait(), other.wait()] == [0, 0], frozen.log() + other.log()
    assert f"trial {trial.number} was reaped by another worker" in frozen.log()
    assert "in a row failed" not in frozen.log()
    states = [t.state for t in assert_exact_budget(pg_url, "frozen", 3)]
    assert states.count(TrialState.FAIL) == 1
