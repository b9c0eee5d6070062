"""The training child's stderr relay: the backends' start-up INFO lines left out, everything else kept."""

from __future__ import annotations

import io
import os

import pytest

from sweeper.training.child_output import StderrRelay, is_noise

# As TensorFlow 2.20 and absl print them in a training child on this project's CPU machines.
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795730245.309243   14826 port.cc:153] oneDNN custom operations are on. You may see slightly "
    b"different numerical results due to floating-point round-off errors.\n",
    b"I1126 21:57:31.123456    1234 cuda_executor.cc:1001] could not open file to read NUMA node\n",
]
KEPT = [
    b"W0000 00:00:1795730245.309243   14826 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n",
    b"E0000 00:00:1795730245.309243   14826 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
    b"F1126 21:57:31.123456    1234 check.cc:10] Check failed: shape mismatch\n",
    b"Traceback (most recent call last):\n",
    b'  File "model.py", line 3, in build\n',
    b"UserWarning: the dataset is tiny\n",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_info_is_noise(line: bytes) -> None:
    assert is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_warnings_errors_and_tracebacks_are_not(line: bytes) -> None:
    assert not is_noise(line)


@pytest.mark.parametrize("verbose", [False, True])
def test_the_relay_copies_what_is_written_to_its_pipe_until_it_closes(verbose: bool) -> None:
    out = io.BytesIO()
    relay = StderrRelay(verbose, out)
    writer = os.dup(relay.write_end.fileno())  # the child's copy
    relay.close_write_end()
    os.write(writer, b"".join(NOISE + KEPT))
    os.close(writer)
    relay.join()
    assert out.getvalue() == b"".join((NOISE if verbose else []) + KEPT)
