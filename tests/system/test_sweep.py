"""Real sweeps: smoke trials trained on real CIFAR-10 images, stored in real PostgreSQL and SQLite.

Workers started from separate shells fill one study in test_fleet (four of them, on PostgreSQL)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweeper import storage, studyfile
from sweeper.cli import sweep
from tests.conftest import QUICK_TRAINING, ROOT, run_sweeper, study_file, sweeper_command
from tests.fleet import trials as stored_trials

SMOKE = ROOT / "studies" / "smoke.toml"


def _open(url: str, path: str) -> None:
    from sweeper.fleet import open_study

    store = storage.connect(url)
    try:
        open_study(store, studyfile.load(path))
    finally:
        store.close()


def test_baseline_enqueued_once_when_workers_start_together(pg_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    starters = [context.Process(target=_open, args=(pg_url, str(SMOKE))) for _ in range(3)]
    for process in starters:
        process.start()
    for process in starters:
        process.join(60)
    assert [p.exitcode for p in starters] == [0] * 3
    trials = stored_trials(pg_url, "smoke")
    assert [t.state for t in trials] == [TrialState.WAITING]
    assert trials[0].system_attrs["fixed_params"] == {"dropout": 0.2, "batchnorm": False, "learning_rate": 1e-4}


def test_pruned_trial_keeps_its_intermediate_values(pg_url: str, cli_env: dict, tmp_path: Path) -> None:
    path = study_file(
        tmp_path, study={"name": "always-pruned", "budget": 1}, training=QUICK_TRAINING,
        pruner={"type": "threshold", "lower": 1.01, "n_warmup_steps": 0},
    )  # fmt: skip
    result = run_sweeper("worker", str(path), "--storage", pg_url, env=cli_env)
    assert result.returncode == 0, result.stderr
    [trial] = stored_trials(pg_url, "always-pruned")
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    assert 0 < trial.intermediate_values[1] <= 1 and trial.value == trial.intermediate_values[1]
    assert trial.user_attrs["prune_reason"] == "pruned by threshold at epoch 1"
    assert len(trial.user_attrs["history"]["val_acc"]) == 1


def test_sweep_on_a_terminal_on_the_embedded_sqlite_default(cli_env: dict, tmp_path: Path) -> None:
    path = study_file(tmp_path, study={"name": "smoke-live", "budget": 3}, training=QUICK_TRAINING)
    screen = _run_on_a_terminal(sweeper_command("sweep", str(path), "--workers", "2"), cli_env, tmp_path)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # the redraws' cursor moves
    worker_rows = re.findall(r"^(\S+:\d+) +\d+ +dropout=\S+ batchnorm=\S+ learning_rate=\S+ +(\d)/2 ", text, re.M)
    assert {worker for worker, epoch in worker_rows if epoch == "1"} and len({w for w, _ in worker_rows}) == 2, text
    assert re.search(r"study smoke-live: \d/3 finished, \d pruned, .* \| ETA \d+m\d\ds at most \|", text), text
    assert "trial 0 started" in text and "oneDNN" not in text  # log lines scroll above the view
    assert "smoke-live" in text.rsplit("study smoke-live:", 1)[-1]  # the final table

    url = f"sqlite:///{tmp_path / 'sweeper.db'}"  # no --storage: the embedded default in the working folder
    trials = stored_trials(url, "smoke-live")
    assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(math.isfinite(t.value) and 0 < t.value <= 1 for t in trials)
    # Stock Optuna names the study's metric.
    assert optuna.load_study(study_name="smoke-live", storage=url).metric_names == ["val_acc"]
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "trials", "--study-name", "smoke-live", "--storage", url,
         "-f", "json"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all("val_acc" in trial["value"] for trial in json.loads(listed.stdout))


def _run_on_a_terminal(command: list[str], env: dict, cwd: Path, timeout: float = 300) -> str:
    """Everything a real pseudo-terminal showed while `command` ran to its end."""
    controller, terminal = os.openpty()
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "50"}
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=cwd)
    os.close(terminal)
    screen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1)
        try:
            chunk = os.read(controller, 65536) if ready else b""
        except OSError:  # the terminal closed: every process on it has exited
            break
        screen += chunk
        if not chunk and process.poll() is not None:
            break
    os.close(controller)
    assert process.wait(timeout=10) == 0, screen.decode(errors="replace")[-3000:]
    return screen.decode(errors="replace").replace("\r", "\n")


def test_a_worker_killed_by_a_signal_is_the_sweeps_exit_status() -> None:
    assert sweep.worst_exit_code([0, -9]) == 137 and sweep.worst_exit_code([-15, 1]) == 143
    assert sweep.worst_exit_code([0, 1, 0]) == 1 and sweep.worst_exit_code([0, 0]) == 0


def test_a_sweep_stopped_as_its_workers_start_stops_them(cli_env: dict, tmp_path: Path) -> None:
    """A SIGTERM just as the workers start reaches them: before, the sweep exited at once and left
    a worker to run the whole study."""
    path = study_file(tmp_path, study={"name": "early", "budget": 6}, training=QUICK_TRAINING)
    url = f"sqlite:///{tmp_path / 'early.db'}"
    sweep_process = subprocess.Popen(
        sweeper_command("sweep", str(path), "--workers", "2", "--storage", url),
        env=cli_env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = []
    while not said or "sweep: 2 workers" not in said[-1]:  # logged just before the workers are started
        said.append(sweep_process.stderr.readline())
        assert said[-1] or sweep_process.poll() is None, "".join(said)
    sweep_process.send_signal(signal.SIGTERM)
    rest = sweep_process.communicate(timeout=300)[1]  # the workers share the pipe: this waits for them too
    assert sweep_process.returncode == 0 and "Traceback" not in rest, "".join(said) + rest
    finished = [t for t in stored_trials(url, "early") if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) < 6, f"a worker ran the study after the stop:\n{rest[:2500]}"
