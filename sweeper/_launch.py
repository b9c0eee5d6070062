"""The `sweeper` process's first instant: SIGTERM already means a clean exit, passwords leave argv.

Importing the CLI (Optuna, SQLAlchemy, NumPy) takes seconds on a busy host; until the worker
installs its own handlers there is nothing to clean up, so SIGTERM then exits 0, as it does at
any later moment. A storage URL typed with its password would stay in the process table (`ps`)
for the worker's whole life; the process title is rewritten with the password masked.
"""

from __future__ import annotations

import os
import re
import signal
import sys

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


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


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(stopped_exit_code())


def _hide_passwords(argv: list[str]) -> None:
    masked = [_PASSWORD_IN_URL.sub(r"\1***@", arg) for arg in argv]
    if masked != argv:
        import setproctitle  # only where a password was typed: GPU images without it still run

        setproctitle.setproctitle(" ".join([sys.executable, "-m", "sweeper", *masked[1:]]))


def main() -> int:
    stopped_exit_code()  # a bad value fails now, not when a stop comes
    signal.signal(signal.SIGTERM, _exit_cleanly)
    _hide_passwords(sys.argv)
    from sweeper.cli import main as cli_main

    return cli_main()
