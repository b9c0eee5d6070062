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
from sweeper.training.prepared import default_cache_dir

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


STEPS_PER_EXECUTION = {"jax": 1, "tensorflow": 16, "torch": 1}
"""`[training] steps_per_execution = "auto"`, per backend, from BENCHMARKS.md §8 on a 2-core CPU:
TensorFlow runs the steps of one execution in one graph loop, 1.03x the images/s at 16 steps
(1.02x at 4); JAX's Keras trainer calls its compiled step once per batch whatever the setting, so
more steps gain nothing there (0.99-1.00x); PyTorch's refuses any other value than 1."""


def steps_per_execution(setting: int | str, backend: str) -> int:
    """The study's `steps_per_execution` for this backend ("auto" resolved); one PyTorch cannot run is an error.

    Called by the worker before any trial, and by the training child to compile with it.
    """
    steps = STEPS_PER_EXECUTION[backend] if setting == "auto" else int(setting)
    if backend == "torch" and steps != 1:
        raise SweeperError(
            f"[training] steps_per_execution = {steps} cannot train on the torch backend, which runs one "
            'batch per call: use "auto" or 1, or another backend',
            2,
        )
    return steps


def child_env(backend: str, gpu_index: int | None, workers_per_gpu: int) -> dict[str, str]:
    """Environment for a training child: its backend, its one GPU (or none), and GPU memory rules.

    Several workers may share one GPU, so no backend may take the whole card at start-up:
    TensorFlow grows its memory as needed, JAX does not preallocate and is capped at its share,
    and PyTorch's caching allocator already takes memory only as tensors need it.
    """
    env = {"KERAS_BACKEND": backend, DATA_ON_DEVICE_ENV: data_on_device_setting(), **compilation_cache_env(backend)}
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


COMPILE_CACHE_ENV, COMPILE_CACHE_MB_ENV = "SWEEPER_COMPILE_CACHE_DIR", "SWEEPER_COMPILE_CACHE_MB"
DEFAULT_COMPILE_CACHE_MB = 2048


def compilation_cache_env(backend: str) -> dict[str, str]:
    """The backend's persistent compilation cache, on a folder every worker of the host shares.

    A graph compiled once is then loaded, not compiled, by every later child on the host: the
    packed workers of a GPU, a replaced child, a user's `[model]` that the warm child cannot reuse
    in place. `$SWEEPER_COMPILE_CACHE_DIR` (default: `compiled/` in the data cache, which compose
    and Kubernetes already share per host; `off` turns it off), bounded by
    `$SWEEPER_COMPILE_CACHE_MB` (JAX evicts the least recently used entries beyond it). JAX and
    TensorFlow's XLA keep such a cache; PyTorch compiles nothing of Keras' by default.
    """
    folder = os.environ.get(COMPILE_CACHE_ENV)
    if folder == "off" or backend == "torch":
        return {}
    if not folder:
        folder = str(default_cache_dir() / "compiled")
    megabytes = os.environ.get(COMPILE_CACHE_MB_ENV) or str(DEFAULT_COMPILE_CACHE_MB)
    if not megabytes.isdigit():
        raise SweeperError(f"{COMPILE_CACHE_MB_ENV} must be a whole number of megabytes, not {megabytes!r}", 2)
    if backend == "jax":
        return {"JAX_COMPILATION_CACHE_DIR": folder, "JAX_COMPILATION_CACHE_MAX_SIZE": str(int(megabytes) * 2**20)}
    flags = os.environ.get("TF_XLA_FLAGS", "")
    return {"TF_XLA_FLAGS": f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()}


DATA_ON_DEVICE_ENV = "SWEEPER_DATA_ON_DEVICE"


def data_on_device_setting() -> str:
    """`$SWEEPER_DATA_ON_DEVICE`: `auto` (the default), `1` or `0` (`device_data` says what each means).

    Read by the worker before it starts a child, so a typo stops the worker, not every trial.
    """
    setting = os.environ.get(DATA_ON_DEVICE_ENV, "auto").strip().lower()
    if setting not in ("auto", "0", "1"):
        raise SweeperError(f"{DATA_ON_DEVICE_ENV} must be auto, 1 or 0, not {setting!r}", 2)
    return setting


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
"""Recorded each time JAX asks XLA for a program (jax._src.dispatch.BACKEND_COMPILE_EVENT)..."""
_JAX_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
"""...which a hit in the persistent compilation cache answers without compiling."""


class CompilationCounter:
    """How many programs the backend compiled since it was made: JAX reports each request for
    one and each answered from the persistent cache through `jax.monitoring`; the other backends
    report none, so theirs is None.

    Call in the training child, after Keras is imported.
    """

    def __init__(self) -> None:
        import keras

        self.requests: int | None = None
        self.cache_hits = 0
        if keras.backend.backend() != "jax":
            return
        import jax.monitoring

        self.requests = 0
        jax.monitoring.register_event_duration_secs_listener(self._requested)
        jax.monitoring.register_event_listener(self._hit)

    def _requested(self, event: str, duration_secs: float, **_: str | int) -> None:
        if event == _JAX_COMPILE_EVENT and self.requests is not None:
            self.requests += 1

    def _hit(self, event: str, **_: str | int) -> None:
        if event == _JAX_CACHE_HIT_EVENT:
            self.cache_hits += 1

    def stop(self) -> int | None:
        """Stop listening; the programs compiled (not loaded from the cache), or None."""
        if self.requests is None:
            return None
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._requested)
        jax.monitoring.unregister_event_listener(self._hit)
        return self.requests - self.cache_hits
