"""GPU slots: claims spread over the GPUs, pack when asked, and wait for a free slot."""

from __future__ import annotations

import logging
import threading

from sweeper.training import gpus
from tests.fleet import wait_for


def test_gpu_claims_spread_over_the_gpus_pack_when_asked_and_wait_for_a_free_slot(
    tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("SWEEPER_GPU_LOCK_DIR", str(tmp_path))
    stop = threading.Event()
    monkeypatch.setenv("SWEEPER_GPU_COUNT", "2")
    spread = [gpus.claim("auto", per_gpu=1, fallback="cpu", stop=stop) for _ in range(3)]
    assert [slot.index for slot in spread] == [0, 1, None]  # one worker per GPU, then the CPU
    assert [slot.child_env("tensorflow")["CUDA_VISIBLE_DEVICES"] for slot in spread] == ["0", "1", "-1"]
    for slot in spread:
        slot.release()
    monkeypatch.setenv("SWEEPER_GPU_COUNT", "1")
    held = [gpus.claim("auto", per_gpu=2, fallback="wait", stop=stop) for _ in range(2)]
    assert [slot.index for slot in held] == [0, 0]  # two workers packed on one GPU
    waiting: list[gpus.GpuSlot] = []
    thread = threading.Thread(
        target=lambda: waiting.append(gpus.claim("auto", per_gpu=2, fallback="wait", stop=stop, poll_seconds=0.1))
    )
    with caplog.at_level(logging.INFO, logger="sweeper.gpus"):
        thread.start()
        wait_for(lambda: "waiting for one to free up" in caplog.text, timeout=30, what="the third claim to wait")
    assert not waiting, "a third worker must wait while both slots are held"
    held[0].release()
    thread.join(5)
    assert waiting and waiting[0].index == 0 and waiting[0].child_env("tensorflow")["CUDA_VISIBLE_DEVICES"] == "0"
