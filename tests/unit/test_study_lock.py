"""The study lock says at debug level how long each purpose waited for it and held it: the
figures a fleet's ceiling is computed from (claims per second = 1 / hold time)."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest

from sweeper.storage import connect

HOLD_SECONDS = 0.2


def test_each_purpose_logs_its_wait_and_its_hold(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = connect(f"sqlite:///{tmp_path / 's.db'}")
    inside = threading.Event()

    def hold() -> None:
        with store.lock("s", "holding"):
            inside.set()
            time.sleep(HOLD_SECONDS)

    holder = threading.Thread(target=hold)
    try:
        with caplog.at_level(logging.DEBUG, logger="sweeper.storage"):
            holder.start()
            inside.wait(timeout=30)
            with store.lock("s", "waiting"):
                pass
            holder.join()
    finally:
        store.close()

    timings = {}
    for record in caplog.records:
        found = re.fullmatch(r"study lock s, (\w+): waited ([\d.]+) ms, held ([\d.]+) ms", record.getMessage())
        if found:
            timings[found[1]] = (float(found[2]), float(found[3]))
    assert timings["holding"][1] >= HOLD_SECONDS * 1e3, timings
    assert "waiting" in timings, timings  # how long it waited depends on the machine's load: only logged
