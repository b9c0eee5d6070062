"""Keras backends: the choice and each backend's GPU memory rules. Real JAX sweeps on this CPU are in
test_user_code (a user's model) and test_benchmarks (the GPU check's tutorial CNN)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from sweeper.errors import SweeperError
from sweeper.training import backends, gpus
from tests.conftest import ROOT, run_sweeper, study_file, sweeper_main


def test_backend_comes_from_the_flag_then_the_environment_then_tensorflow(monkeypatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert backends.resolve(None) == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backends.resolve(None) == "jax"
    assert backends.resolve("torch") == "torch"
    with pytest.raises(SweeperError, match="--backend must be one of tensorflow, jax, torch, not 'jaxx'") as caught:
        backends.resolve("jaxx")
    assert caught.value.exit_code == 2


def test_packed_workers_share_one_gpu_and_split_its_memory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SWEEPER_GPU_COUNT", "1")
    monkeypatch.setenv("SWEEPER_GPU_LOCK_DIR", str(tmp_path))
    stop = threading.Event()
    slots = [gpus.claim("require", per_gpu=2, fallback="cpu", stop=stop) for _ in range(2)]
    envs = [slot.child_env("jax") for slot in slots]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["0", "0"]
    assert all(env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for env in envs)
    assert [float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) for env in envs] == [0.45, 0.45]
    assert slots[0].child_env("tensorflow")["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert set(slots[0].child_env("torch")) == {"KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "SWEEPER_DATA_ON_DEVICE"}
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SWEEPER_DATA_ON_DEVICE", raising=False)
    assert gpus.GpuSlot(None).child_env("jax") == {
        "KERAS_BACKEND": "jax",
        "SWEEPER_DATA_ON_DEVICE": "auto",
        "CUDA_VISIBLE_DEVICES": "-1",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache" / "compiled"),
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(2048 * 2**20),
    }


def test_the_compilation_cache_is_shared_per_host_bounded_and_can_be_turned_off(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SWEEPER_COMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SWEEPER_COMPILE_CACHE_MB", "100")
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    assert backends.compilation_cache_env("jax") == {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path), "JAX_COMPILATION_CACHE_MAX_SIZE": str(100 * 2**20)
    }  # fmt: skip
    assert backends.compilation_cache_env("tensorflow") == {
        "TF_XLA_FLAGS": f"--tf_xla_auto_jit=2 --tf_xla_persistent_cache_directory={tmp_path}"
    }
    assert backends.compilation_cache_env("torch") == {}
    monkeypatch.setenv("SWEEPER_COMPILE_CACHE_MB", "lots")
    with pytest.raises(SweeperError, match="SWEEPER_COMPILE_CACHE_MB must be a whole number"):
        backends.compilation_cache_env("jax")
    monkeypatch.setenv("SWEEPER_COMPILE_CACHE_DIR", "off")
    assert backends.compilation_cache_env("jax") == {}


def test_a_typo_in_where_the_data_lives_stops_the_worker_before_any_child_starts(monkeypatch) -> None:
    monkeypatch.setenv("SWEEPER_DATA_ON_DEVICE", " 1 ")
    assert backends.child_env("jax", None, 1)["SWEEPER_DATA_ON_DEVICE"] == "1"
    monkeypatch.setenv("SWEEPER_DATA_ON_DEVICE", "yes")
    with pytest.raises(SweeperError, match="SWEEPER_DATA_ON_DEVICE must be auto, 1 or 0, not 'yes'"):
        backends.child_env("jax", None, 1)


def test_steps_per_execution_auto_is_the_measured_default_and_torch_refuses_more_than_one() -> None:
    assert [backends.steps_per_execution("auto", name) for name in ("tensorflow", "jax", "torch")] == [16, 1, 1]
    assert backends.steps_per_execution(4, "jax") == 4 and backends.steps_per_execution(1, "torch") == 1
    with pytest.raises(SweeperError, match=r"steps_per_execution = 4 cannot train on the torch backend") as caught:
        backends.steps_per_execution(4, "torch")
    assert caught.value.exit_code == 2


def test_a_child_that_holds_a_gpu_it_cannot_see_refuses_to_train_on_the_cpu(monkeypatch) -> None:
    monkeypatch.delenv("SWEEPER_GPU_COUNT", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(SweeperError, match="holds GPU 0, but Keras' jax backend sees no GPU.*sweeper\\[jax-gpu\\]"):
        backends.check_gpu_seen("cpu", "jax")
    backends.check_gpu_seen("gpu:NVIDIA H100 80GB HBM3", "jax")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    backends.check_gpu_seen("cpu", "jax")


def test_worker_told_to_require_a_gpu_on_a_host_without_one_exits_2(cli_env: dict, tmp_path: Path) -> None:
    env = {**cli_env, "SWEEPER_GPU_COUNT": "0"}
    result = run_sweeper("worker", str(study_file(tmp_path)), "--gpu", "require", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "sweeper: error: --gpu require: no GPU found on this host (nvidia-smi lists none); use --gpu auto to allow the CPU"
    ]
    assert not (tmp_path / "sweeper.db").exists(), "nothing is written before the GPU is settled"


@pytest.mark.parametrize("command", ["worker", "sweep"])
def test_a_backend_that_cannot_be_imported_is_refused_before_the_study_is_touched(
    command: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    assert importlib.util.find_spec("torch") is None, (
        "this test needs a backend missing here: the test venv has no torch"
    )
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    database = tmp_path / "never.db"
    result = sweeper_main(capsys, command, str(ROOT / "studies" / "smoke.toml"), "--storage", f"sqlite:///{database}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "sweeper: error: the Keras backend 'torch' cannot be used here: torch not installed "
        "(install sweeper[torch], or choose another with --backend or KERAS_BACKEND)"
    ]
    assert not database.exists()
