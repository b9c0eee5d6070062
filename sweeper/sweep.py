"""`sweeper sweep`: N local workers on one study, started together, signalled together, waited for.

The storage URL reaches the workers through the environment, never their command line, where
`ps` would show its password.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from sweeper import urls

log = logging.getLogger("sweeper.sweep")


def run_workers(workers: int, worker_args: list[str], url: str) -> int:
    """Start `workers` processes of `sweeper worker WORKER_ARGS`; pass SIGTERM and Ctrl-C on; the worst exit code."""
    env = {**os.environ, "SWEEPER_STORAGE": url}
    command = [sys.executable, "-m", "sweeper", *worker_args]
    log.info("sweep: %d workers, storage %s", workers, urls.mask(url))
    processes = [subprocess.Popen(command, env=env) for _ in range(workers)]

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(process.wait() for process in processes)
