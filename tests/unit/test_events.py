"""Progress events: what a worker writes for the live view reads back as the same event."""

from __future__ import annotations

import io

import pytest

from sweeper.fleet import events
from sweeper.fleet.events import EpochEnded, TrialEnded, TrialStarted

EXAMPLES = [
    TrialStarted("host:1", 4, "dropout=0.3 batchnorm=True learning_rate=0.001", 30),
    EpochEnded("host:1", 4, 12, 30, 0.581, 0.59, 12.25),
    TrialEnded("host:1", 4, "PRUNED"),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_an_event_written_as_a_json_line_reads_back_the_same(event) -> None:
    out = io.StringIO()
    events.JsonLines(out)(event)
    assert out.getvalue().count("\n") == 1
    assert events.parse(out.getvalue()) == event


@pytest.mark.parametrize("line", ["", "not json", "[]", '{"event": "Unknown"}', '{"event": "TrialEnded", "x": 1}'])
def test_anything_else_on_the_stream_is_not_an_event(line: str) -> None:
    assert events.parse(line) is None


def test_the_epoch_line_is_plain_text() -> None:
    line = events.epoch_line(EXAMPLES[1])
    assert line == "host:1: trial 4 epoch 12/30 val_acc=0.5810 best=0.5900 12.2s/epoch"
    assert line.isprintable()
