"""The training child's stderr, relayed by the worker with the Keras backends' start-up noise left out.

TensorFlow (through absl) writes INFO lines such as "oneDNN custom operations are on" straight to
file descriptor 2 at import and at its first operation, before any Python setting can stop them;
several per child, they bury a fleet's `docker compose logs`. So the child's descriptor 2 is a
pipe, and a thread of the worker's copies its lines to the worker's own stderr, leaving out
only those INFO lines (warnings, errors and fatal messages pass, as does everything else). The
relay lives in the worker, not the child, so a child that crashes still has its last words heard.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO

_NOISE = (
    # absl's INFO lines, e.g. "I0000 00:00:1795730245.309243   14826 port.cc:153] oneDNN custom operations are on"
    re.compile(rb"^I\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] "),
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
)


def is_noise(line: bytes) -> bool:
    """An INFO line of TensorFlow's, XLA's or absl's start-up (warnings and errors are never noise)."""
    return any(pattern.match(line.rstrip(b"\r\n")) for pattern in _NOISE)


class StderrRelay:
    """A pipe for one child's stderr, and the thread that copies it out, dropping noise unless `verbose`."""

    def __init__(self, verbose: bool, out: BinaryIO | None = None) -> None:
        self._verbose = verbose
        self._out = out or sys.stderr.buffer
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb")
        self.write_end = multiprocessing.connection.Connection(write_fd, readable=False)
        """Handed to the child as a process argument: multiprocessing duplicates its descriptor into
        a spawned child, which then makes it its descriptor 2 (`become_stderr`)."""
        self._thread = threading.Thread(target=self._copy, name="child-stderr", daemon=True)
        self._thread.start()

    def close_write_end(self) -> None:
        """The worker's copy of the write end; once the child has its own, closing it lets EOF come."""
        self.write_end.close()

    def join(self, timeout: float = 5.0) -> None:
        """Wait until the child's last line is out (its pipe reached EOF)."""
        self._thread.join(timeout)

    def _copy(self) -> None:
        with self._reader:
            for line in self._reader:
                if self._verbose or not is_noise(line):
                    self._out.write(line)
                    self._out.flush()


def become_stderr(write_end: multiprocessing.connection.Connection) -> None:
    """In the child, before a backend is imported: descriptor 2 (and so `sys.stderr`) is the relay's pipe."""
    os.dup2(write_end.fileno(), 2)
    write_end.close()


@contextlib.contextmanager
def filtered_stderr(verbose: bool) -> Iterator[None]:
    """This process's own descriptor 2 through a relay, while a backend loads and runs here (`sweeper export`)."""
    saved = os.dup(2)
    relay = StderrRelay(verbose, os.fdopen(os.dup(saved), "wb"))
    os.dup2(relay.write_end.fileno(), 2)
    relay.close_write_end()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the relay reads to its end
        os.close(saved)
        relay.join()
