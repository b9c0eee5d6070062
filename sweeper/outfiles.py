"""Files a command writes where the user said (`report --out`, `export --out`).

A path that cannot be written is the user's to fix (exit 2), and a write cut short (a full
disk) leaves no truncated file behind that could pass for a good one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sweeper.errors import SweeperError


@contextlib.contextmanager
def writing(out: Path) -> Iterator[Path]:
    """Around whatever writes `out`: an OSError removes what was written and becomes one line."""
    if out.is_dir():
        raise SweeperError(f"--out {out} is a folder; give a file name such as {out / 'model.keras'}")
    try:
        yield out
    except OSError as exc:
        if not isinstance(exc, FileExistsError):  # a file that was there before is the user's
            with contextlib.suppress(OSError):
                out.unlink(missing_ok=True)
        raise SweeperError(f"cannot write {out}: {exc.strerror or exc}") from None
