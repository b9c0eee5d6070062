"""The `sweeper` process's first instant: SIGTERM already means a clean exit, passwords leave argv.

Importing the CLI (Optuna, SQLAlchemy, NumPy) takes seconds on a busy host; until the worker
installs its own handlers there is nothing to clean up, so SIGTERM then exits 0, as it does at
any later moment. A storage URL typed with its password would stay in the process table (`ps`)
for the worker's whole life; the process title is rewritten with the password masked, which
cannot hide it from the first instant, so a line says so.
"""

from __future__ import annotations

import signal
import sys

from sweeper._masking import mask_url_text
from sweeper.stopping import stopped_exit_code


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(stopped_exit_code())


def _hide_passwords(argv: list[str]) -> None:
    masked = [mask_url_text(arg) for arg in argv]
    if masked != argv:
        import setproctitle  # only where a password was typed: GPU images without it still run

        setproctitle.setproctitle(" ".join([sys.executable, "-m", "sweeper", *masked[1:]]))
        print(
            "sweeper: warning: a password typed on the command line is visible to other users in the "
            "process table (ps) while sweeper starts; put it in SWEEPER_STORAGE_PASSWORD_FILE instead",
            file=sys.stderr,
        )


def main() -> int:
    stopped_exit_code()  # a bad value fails now, not when a stop comes
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # `sweep` starts its workers with it blocked
    _hide_passwords(sys.argv)
    from sweeper.cli import main as cli_main

    return cli_main()
