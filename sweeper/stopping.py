"""How a process that was asked to stop exits: one setting, read by the launcher and the worker.

Dependency-free: the launcher reads it in its first instant, before anything heavy is imported.
"""

from __future__ import annotations

import os
import sys


def stopped_exit_code() -> int:
    """The exit status of a worker stopped before its study was done: 0 unless
    `SWEEPER_STOPPED_EXIT_CODE` says otherwise. A Kubernetes Job counts exit 0 as the work being
    finished and would not replace an evicted worker; its manifest sets a non-zero code."""
    value = os.environ.get("SWEEPER_STOPPED_EXIT_CODE", "0")
    if not value.isdigit() or int(value) > 255:
        print(
            f"sweeper: error: SWEEPER_STOPPED_EXIT_CODE must be a number from 0 to 255, not {value!r}", file=sys.stderr
        )
        raise SystemExit(2)
    return int(value)
