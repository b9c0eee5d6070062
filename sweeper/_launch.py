"""The `sweeper` process's first instant: SIGTERM already means a clean exit, passwords leave argv.

Importing the CLI (Optuna, SQLAlchemy, NumPy) takes seconds on a busy host; until the worker
installs its own handlers there is nothing to clean up, so SIGTERM then exits 0, as it does at
any later moment. A storage URL typed with its password would stay in the process table (`ps`)
for the worker's whole life; the process title is rewritten with the password masked.
"""

from __future__ import annotations

import re
import signal
import sys

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _hide_passwords(argv: list[str]) -> None:
    masked = [_PASSWORD_IN_URL.sub(r"\1***@", arg) for arg in argv]
    if masked != argv:
        import setproctitle  # only where a password was typed: GPU images without it still run

        setproctitle.setproctitle(" ".join([sys.executable, "-m", "sweeper", *masked[1:]]))


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    _hide_passwords(sys.argv)
    from sweeper.cli import main as cli_main

    return cli_main()
