"""Which Keras backend trains, how it shares a GPU, and what device a trial really ran on.

The model is plain Keras 3, so TensorFlow, JAX and PyTorch all train it; the worker picks one
(`--backend`, else `$KERAS_BACKEND`, else TensorFlow) and hands it to its training child through
the environment, which Keras reads once, at import. The worker itself never imports Keras.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sweeper.errors import SweeperError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
log = logging.getLogger("sweeper.backends")
_GPU_EXTRA = {"tensorflow": "gpu", "jax": "jax-gpu", "torch": "torch"}


def resolve(cli_value: str | None) -> str:
    """`--backend`, else `$KERAS_BACKEND`, else TensorFlow; anything else is a clear error."""
    name = cli_value or os.environ.get("KERAS_BACKEND") or DEFAULT
    if name not in BACKENDS:
        source = "--backend" if cli_value else "KERAS_BACKEND"
        raise SweeperError(f"{source} must be one of {', '.join(BACKENDS)}, not {name!r}", 2)
    return name


def require_installed(backend: str) -> None:
    """Refuse to join a study with a backend this machine cannot import: every trial would fail.

    Looked up, not imported: the worker never imports Keras (the training child does, seconds later).
    """
    import importlib.util

    missing = [module for module in (backend, "keras") if importlib.util.find_spec(module) is None]
    if missing:
        raise SweeperError(
            f"the Keras backend {backend!r} cannot be used here: {' and '.join(missing)} not installed "
            f"(install sweeper[{_GPU_EXTRA[backend]}], or choose another with --backend or KERAS_BACKEND)",
            2,
        )


def child_env(backend: str, gpu_index: int | None, workers_per_gpu: int) -> dict[str, str]:
    """Environment for a training child: its backend, its one GPU (or none), and GPU memory rules.

    Several workers may share one GPU, so no backend may take the whole card at start-up:
    TensorFlow grows its memory as needed, JAX does not preallocate and is capped at its share,
    and PyTorch's caching allocator already takes memory only as tensors need it.
    """
    env = {"KERAS_BACKEND": backend}
    if gpu_index is None:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        if backend == "jax":
            env["JAX_PLATFORMS"] = "cpu"  # a JAX GPU build would otherwise warn that it found no GPU
        return env
    env["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
    if backend == "tensorflow":
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    elif backend == "jax":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / workers_per_gpu:.3f}"
    return env


def describe_device() -> dict[str, Any]:
    """The device this (child) process trains on, as Keras' backend sees it: kind, name, peak memory.

    Call after Keras is imported, in the training child only.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        on_gpu = device.platform == "gpu"
        name = device.device_kind
        stats = (device.memory_stats() or {}) if on_gpu else {}
        peak = stats.get("peak_bytes_in_use", 0)
    elif backend == "torch":
        import torch

        on_gpu = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
        peak = torch.cuda.max_memory_allocated(0) if on_gpu else 0
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        on_gpu = bool(gpus)
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if on_gpu else "cpu"
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] if on_gpu else 0
    return {
        "backend": backend,
        "device": f"gpu:{name}" if on_gpu else "cpu",
        "gpu_peak_mb": peak / 2**20,
    }


def check_gpu_seen(device: str, backend: str) -> None:
    """A child given a GPU must train on it: a silent fall back to the CPU is an error.

    Where the GPU count was forced (`SWEEPER_GPU_COUNT`: tests of the slot logic on CPU hosts),
    the trial goes on on the CPU with a warning; it records `device = cpu` either way.
    """
    held = os.environ.get("CUDA_VISIBLE_DEVICES", "-1")
    if held == "-1" or device.startswith("gpu:"):
        return
    problem = f"this worker holds GPU {held}, but Keras' {backend} backend sees no GPU"
    if os.environ.get("SWEEPER_GPU_COUNT") is not None:
        log.warning("%s (SWEEPER_GPU_COUNT is forced): training on the CPU", problem)
        return
    raise SweeperError(
        f"{problem}: install its GPU build (pip install 'sweeper[{_GPU_EXTRA[backend]}]') or run with --gpu none"
    )


_JAX_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""What JAX records each time XLA compiles a program (jax._src.dispatch.BACKEND_COMPILE_EVENT)."""


class CompilationCounter:
    """How many programs the backend compiled since it was made: JAX reports each compilation
    through `jax.monitoring`; the other backends report none, so theirs is None.

    Call in the training child, after Keras is imported.
    """

    def __init__(self) -> None:
        import keras

        self.count: int | None = None
        if keras.backend.backend() != "jax":
            return
        import jax.monitoring

        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._heard)

    def _heard(self, event: str, duration_secs: float, **_: str | int) -> None:
        if event == _JAX_COMPILE_EVENT and self.count is not None:
            self.count += 1

    def stop(self) -> int | None:
        """Stop listening; the number counted."""
        if self.count is not None:
            import jax.monitoring

            jax.monitoring.unregister_event_duration_listener(self._heard)
        return self.count
