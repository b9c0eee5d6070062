"""What a worker tells whoever watches it, as it happens: a trial started, an epoch ended, a trial ended.

A worker writes them as log lines (one per epoch, unless told not to) and, for `sweeper sweep`'s
live view, as JSON lines on its standard output (`sweeper worker --events json`). One JSON object
per line, with an "event" key naming the type, so the sweep can read them back with `parse`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class TrialStarted:
    worker: str
    trial: int
    params: str
    """As `search.format_params` prints them."""
    epochs: int


@dataclass(frozen=True)
class EpochEnded:
    worker: str
    trial: int
    epoch: int
    epochs: int
    val_acc: float
    best_val_acc: float
    """The best of this trial's epochs so far: the value the trial records if it ends now."""
    seconds: float


@dataclass(frozen=True)
class TrialEnded:
    worker: str
    trial: int
    state: str
    """COMPLETE, PRUNED or FAIL."""


Event = TrialStarted | EpochEnded | TrialEnded
_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in (TrialStarted, EpochEnded, TrialEnded)}


def epoch_line(event: EpochEnded) -> str:
    """The plain log line of an epoch (no control characters: it goes to files and `docker compose logs`)."""
    return (
        f"{event.worker}: trial {event.trial} epoch {event.epoch}/{event.epochs} "
        f"val_acc={event.val_acc:.4f} best={event.best_val_acc:.4f} {event.seconds:.1f}s/epoch"
    )


def to_json(event: Event) -> str:
    return json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)})


def parse(line: str) -> Event | None:
    """The event a JSON line holds, or None for anything else (a line that is not one of ours)."""
    try:
        data = json.loads(line)
        cls = _TYPES[data.pop("event")]
        return cls(**data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class JsonLines:
    """Writes each event as one JSON line and flushes, so a reader sees it at once."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        self._out.write(to_json(event) + "\n")
        self._out.flush()
