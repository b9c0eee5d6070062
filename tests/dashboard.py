"""`sweeper dashboard` as a process on a free port, started and stopped the way an operator would."""

from __future__ import annotations

import signal
import subprocess

from tests.conftest import http_status, sweeper_command
from tests.fleet import wait_for
from tests.ports import free_port


def start_dashboard(url: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        sweeper_command("dashboard", "--storage", url, "--port", str(port), "--refresh-seconds", "1", *extra),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_status(base + "/api/meta") in (200, 401), timeout=60, what="the dashboard")
    return process, base


def stop_dashboard(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    return output
