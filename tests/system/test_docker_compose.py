"""`docker compose up workers`, for real: a Docker engine of the tests' own builds and runs the fleet.

The compose files are the ones users run (with the CPU override); the tests' override only swaps
images, ports, networking and the data source (tests/engine/compose.test.yml). Run as root, the
tests install and start the engine (apt's docker.io); as an ordinary user they skip with the
reason. In CI (root) a missing part fails them with the reason: they never pass without running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, http_status
from tests.docker_engine import (
    COMPOSE,
    DASHBOARD_PASSWORD,
    POSTGRES_PASSWORD,
    STORAGE_URL,
    Engine,
    EngineUnavailable,
    Project,
)
from tests.fleet import assert_exact_budget, trials, wait_for

BUDGET = 6  # studies/smoke.toml


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("the Docker engine tests install and start dockerd, which needs root (CI runs them as root)")
    engine = Engine(tmp_path_factory.mktemp("engine") / "dockerd.log")
    try:
        engine.start()
        engine.build_base_images()
    except EngineUnavailable as exc:
        engine.stop()
        pytest.fail(f"the Docker engine tests need a Docker engine and local base images: {exc}")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def built(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The project's image, built once by `docker compose build` from the real Dockerfile."""
    Project(engine, tmp_path_factory.mktemp("build")).compose("build", "workers", timeout=1800)
    return engine


@pytest.fixture
def project(built: Engine, tmp_path: Path) -> Iterator[Project]:
    """A fresh project (empty PostgreSQL volume) with PostgreSQL up and healthy; removed afterwards."""
    project = Project(built, tmp_path)
    project.compose("down", "-v", "--remove-orphans")
    project.compose("up", "-d", "--wait", "postgres", timeout=180)
    yield project
    project.compose("down", "-v", "--remove-orphans", "-t", "0")


def _config(*env: str) -> subprocess.CompletedProcess:
    """The real `docker compose config` (no engine needed) on the files users run, with .env.example."""
    command = [str(COMPOSE), "--project-directory", str(ROOT), "--env-file", str(ROOT / ".env.example"),
               "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.cpu.yml"), "--profile", "tools", "config", "--format", "json"]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "SWEEPER_"))}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**clean, **dict(e.split("=", 1) for e in env)}
    )


SWEEPER_SERVICES = ("workers", "dashboard", "report")


def test_compose_accepts_the_files_users_run() -> None:
    model = json.loads(_config().stdout)
    workers = model["services"]["workers"]
    assert workers["command"][:2] == ["worker", "studies/cifar10-regularization.toml"]
    assert workers["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim-bookworm", "EXTRAS": "cpu"}
    assert "devices" not in str(workers.get("deploy", {})), "the CPU override drops the GPU reservation"
    assert workers["restart"] == "on-failure", "a worker that finished the study stays down"
    studies = [v for v in workers["volumes"] if v["target"] == "/app/studies"]
    assert studies == [{"type": "bind", "source": str(ROOT / "studies"), "target": "/app/studies", "read_only": True,
                        "bind": {"create_host_path": True}}]  # fmt: skip
    assert model["services"]["report"]["entrypoint"] == ["sweeper", "report"]


def test_passwords_come_only_from_compose_secrets() -> None:
    services = json.loads(_config().stdout)["services"]
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), f"{name} has {key} in its environment"
            assert ":" not in value.split("@")[0].split("//")[-1], f"{name}'s {key} holds a user:password: {value}"
    for name in (*SWEEPER_SERVICES, "postgres"):
        mounted = {s["source"]: s["target"] for s in services[name]["secrets"]}
        assert mounted["postgres_password"] == "/run/secrets/postgres_password", name
    for name in SWEEPER_SERVICES:
        assert services[name]["environment"]["SWEEPER_STORAGE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_health_checks_gate_the_start_and_an_init_forwards_signals() -> None:
    services = json.loads(_config().stdout)["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["dashboard"]["healthcheck"]["test"])
    for name in SWEEPER_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert services[name]["init"] is True, name


def exit_codes(project: Project) -> list[int]:
    return [c["State"]["ExitCode"] for c in project.containers("workers")]


def worker_names(project: Project) -> dict[str, str]:
    """Container name -> the worker name it logs when it joins the study."""
    names = {}
    for container in project.containers("workers"):
        logged = project.engine.docker("logs", container["Id"])
        for line in (logged.stdout + logged.stderr).splitlines():
            if "joined study" in line:
                names[container["Name"].lstrip("/")] = line.split(" INFO ", 1)[1].split(": ", 1)[0]
    return names


@pytest.mark.engine
def test_up_workers_runs_the_study_to_its_exact_budget_then_report_prints_it(project: Project) -> None:
    project.compose("up", "workers", timeout=900)

    assert exit_codes(project) == [0, 0]
    finished = assert_exact_budget(STORAGE_URL, "smoke", BUDGET)
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both containers ran trials"
    logs = project.logs("workers")
    assert re.search(r"trial \d+ epoch 1/2 val_acc=", logs), logs  # a line per epoch
    noise = [line for line in logs.splitlines() if not re.match(r"^workers-\d+ +\| \d\d:\d\d:\d\d [A-Z]+ ", line)]
    assert not noise, f"only sweeper's own log lines, not: {noise}"
    for mount in ("/locks", "/cache", "/models"):
        volumes = {m["Name"] for c in project.containers("workers") for m in c["Mounts"] if m["Destination"] == mount}
        assert len(volumes) == 1, f"the workers share one {mount} volume: {volumes}"
    for container in project.containers("workers") + project.containers("postgres"):
        assert POSTGRES_PASSWORD not in json.dumps(container["Config"]), (
            f"{container['Name']}'s configuration holds the password"
        )
    assert all(c["HostConfig"]["Init"] for c in project.containers("workers")), "docker-init runs as PID 1"

    report = project.compose("run", "--rm", "report", "smoke", timeout=300)
    assert f"budget {BUDGET} finished" in report.stdout
    assert "Best val_acc" in report.stdout
    assert POSTGRES_PASSWORD not in report.stdout + report.stderr


@pytest.mark.engine
def test_compose_stop_during_trials_exits_0_and_up_again_finishes(project: Project) -> None:
    project.compose("up", "-d", "workers")
    wait_for(lambda: any(t.state == TrialState.RUNNING for t in trials(STORAGE_URL, "smoke")), what="a running trial")
    for container in project.containers("workers"):
        processes = project.engine.docker("top", container["Id"], "-o", "pid,args").stdout
        assert "docker-init" in processes.splitlines()[1], f"PID 1 is the init: {processes}"
        assert POSTGRES_PASSWORD not in processes, "no password in the process table"

    project.compose("stop", "workers", timeout=120)  # SIGTERM, then SIGKILL after stop_grace_period

    assert exit_codes(project) == [0, 0], "exit 137 would mean Docker had to kill a worker"
    states = [t.state for t in trials(STORAGE_URL, "smoke")]
    assert TrialState.RUNNING not in states, states
    project.compose("up", "workers", timeout=900)
    assert exit_codes(project) == [0, 0]
    assert_exact_budget(STORAGE_URL, "smoke", BUDGET)


@pytest.mark.engine
def test_a_killed_container_fails_its_trial_and_the_other_retries_it(project: Project) -> None:
    project.compose("up", "-d", "workers")
    victim = project.containers("workers")[0]["Name"].lstrip("/")
    victim_name = wait_for(lambda: worker_names(project).get(victim), what="the first worker to join")
    held = wait_for(
        lambda: [t for t in trials(STORAGE_URL, "smoke")
                 if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == victim_name and len(t.params) == 3],
        what="a trial held by the first worker",
    )[0]  # fmt: skip

    project.engine.docker("kill", "--signal", "KILL", victim)

    def settled() -> bool:
        done = trials(STORAGE_URL, "smoke")
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done) == BUDGET and not any(
            t.state == TrialState.RUNNING for t in done
        )

    wait_for(settled, timeout=600, what="the study's budget finished")
    project.compose("stop", "workers", timeout=120)
    all_trials = assert_exact_budget(STORAGE_URL, "smoke", BUDGET)
    failed = next(t for t in all_trials if t.number == held.number)
    assert failed.state == TrialState.FAIL
    retries = [t for t in all_trials if t.number > held.number and t.params == held.params]
    assert [t.state for t in retries if t.state != TrialState.FAIL], "the killed trial ran again with its parameters"


@pytest.mark.engine
def test_dashboard_container_serves_with_its_secret_password_and_refuses_deletes(project: Project) -> None:
    project.compose("up", "-d", "--wait", "dashboard", timeout=300)  # --wait: until its health check passes
    assert project.containers("dashboard")[0]["State"]["Health"]["Status"] == "healthy"

    assert http_status("http://127.0.0.1:8080/dashboard", auth=f"sweeper:{DASHBOARD_PASSWORD}") == 200
    assert http_status("http://127.0.0.1:8080/dashboard", auth="sweeper:wrong") == 401
    assert http_status("http://127.0.0.1:8080/api/studies/0", "DELETE", auth=f"sweeper:{DASHBOARD_PASSWORD}") == 403
    log = project.logs("dashboard")
    assert "password required" in log
    assert DASHBOARD_PASSWORD not in log and POSTGRES_PASSWORD not in log


@pytest.mark.engine
def test_a_missing_password_file_stops_up_before_any_container_starts(project: Project) -> None:
    project.compose("down", "-v")
    project.secrets["postgres_password"].unlink()

    result = project.compose("up", "-d", "workers", check=False, timeout=120)

    assert result.returncode != 0
    assert str(project.secrets["postgres_password"]) in result.stderr, result.stderr
    assert not [c for c in project.containers("workers") if c["State"]["Running"]]
