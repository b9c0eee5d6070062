"""One GPU (or one slot of a shared GPU) per worker, claimed through lock files all workers on a host see.

A slot is a file `gpu<I>.slot<K>.lock` in `$SWEEPER_GPU_LOCK_DIR` (a volume shared by the
containers); holding an exclusive `flock` on it is owning the slot. The kernel drops the lock when
the worker dies however it dies, so a slot is never leaked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sweeper.errors import SweeperError
from sweeper.training import backends

log = logging.getLogger("sweeper.gpus")
# In /tmp (bandit's B108, skipped here): one folder that every user's workers on the host share by
# design, so that they see each other's claims; a lock file is opened without following a link and
# is never written.
DEFAULT_LOCK_DIR = "/tmp/sweeper-gpu-locks"  # nosec B108


def _without_following_links(path: str, flags: int) -> int:
    """Opens a lock file in the shared folder, refusing a symbolic link another user may have planted."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


@dataclass
class GpuSlot:
    index: int | None
    """The GPU this worker trains on, or None for the CPU."""
    per_gpu: int = 1
    """Workers packed on that GPU: each backend is told to take only its share of the memory."""
    _handle: IO | None = None

    @property
    def label(self) -> str:
        return "none" if self.index is None else str(self.index)

    def child_env(self, backend: str) -> dict[str, str]:
        """Pin the training child to this GPU (or hide all GPUs) with its backend's memory rules."""
        return backends.child_env(backend, self.index, self.per_gpu)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def parse_choice(text: str) -> str:
    """`auto`, `require`, `none` or a GPU index, for argparse."""
    if text in ("auto", "require", "none") or text.isdigit():
        return text
    raise ValueError(f"--gpu takes auto, require, none or a GPU index such as 0, not {text!r}")


def detect_count() -> int:
    """GPUs on this host: `$SWEEPER_GPU_COUNT` if set (tests, unusual hosts), else nvidia-smi's list."""
    forced = os.environ.get("SWEEPER_GPU_COUNT")
    if forced is not None:
        if not forced.isdigit():
            raise SweeperError(f"SWEEPER_GPU_COUNT must be a whole number, not {forced!r}")
        return int(forced)
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        # Bandit: a fixed command, found on PATH (where the NVIDIA driver puts it) by shutil.which above
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout  # nosec B603, B607
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def claim(choice: str, *, per_gpu: int, fallback: str, stop: threading.Event, poll_seconds: float = 2.0) -> GpuSlot:
    """Take a GPU slot as asked; with `auto` and every slot busy, wait or fall back to the CPU.

    `require` is `auto` that never trains on the CPU: no GPU on the host is an error, and a
    full host means waiting for a slot.
    """
    if choice == "none":
        return GpuSlot(None)
    if choice not in ("auto", "require"):
        return GpuSlot(int(choice), per_gpu)
    count = detect_count()
    if count == 0 and choice == "require":
        raise SweeperError(
            "--gpu require: no GPU found on this host (nvidia-smi lists none); use --gpu auto to allow the CPU", 2
        )
    if count == 0:
        log.info("no GPU found: training on the CPU")
        return GpuSlot(None)
    if choice == "require":
        fallback = "wait"
    lock_dir = Path(os.environ.get("SWEEPER_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    waiting_said = False
    while not stop.is_set():
        for index in range(count):
            for slot in range(per_gpu):
                handle = open(lock_dir / f"gpu{index}.slot{slot}.lock", "a", opener=_without_following_links)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                log.info("claimed GPU %d (slot %d of %d)", index, slot + 1, per_gpu)
                return GpuSlot(index, per_gpu, handle)
        if fallback == "cpu":
            log.info("all %d GPU slots are taken: training on the CPU", count * per_gpu)
            return GpuSlot(None)
        if not waiting_said:
            log.info("all %d GPU slots are taken: waiting for one to free up", count * per_gpu)
            waiting_said = True
        stop.wait(poll_seconds)
    return GpuSlot(None)
