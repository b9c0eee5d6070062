"""The `sweeper` command: its subcommands (`commands`), the launcher's first instant (`_launch`),
`sweep` with its live view, and argument types.

Nothing is imported here, so `python -m sweeper` handles SIGTERM before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """`sweeper ARGS...` without the launcher: what a program or a test calls."""
    from sweeper.cli.commands import main as run

    return run(argv)
