"""The container files, checked against the Compose Specification, and their commands run for real.

No Docker engine runs here, so the compose file is read the way Compose reads it (YAML, `.env`
interpolation, `!reset` in overrides), validated against the specification's JSON Schema, and its
`workers` and `dashboard` command lines are run as plain processes against PostgreSQL.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sweeper.cli import build_parser
from tests.conftest import ROOT, sweeper_command
from tests.fleet import assert_exact_budget, wait_for

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
GPU_FILE, CPU_FILE = ROOT / "docker-compose.yml", ROOT / "docker-compose.cpu.yml"
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class _Reset:
    """Compose's `!reset` tag: the key is removed from what it overrides."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())


def dotenv(path: Path = ROOT / ".env.example") -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: $VAR forms inside strings, $$ for a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        current = env.get(name)
        if op in (":-", "-"):
            return current if current not in (None, "") or (op == "-" and current is not None) else arg
        if op in (":?", "?"):
            if current in (None, ""):
                raise AssertionError(f"compose needs {name}: {arg}")
            return current
        return current or ""

    return _VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings merge, other values replace, `!reset` removes."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    return override


def load(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    documents = [yaml.load(f.read_text(), Loader=_ComposeLoader) for f in files]
    model = documents[0]
    for override in documents[1:]:
        model = merge(model, override)
    model = interpolate(model, env if env is not None else dotenv())
    return json.loads(json.dumps(model))  # plain data, as Compose passes it to the schema


def _replicas_as_int(model: dict[str, Any]) -> dict[str, Any]:
    for service in model["services"].values():
        deploy = service.get("deploy", {})
        if isinstance(deploy.get("replicas"), str):
            deploy["replicas"] = int(deploy["replicas"])  # Compose casts interpolated numbers
    return model


@pytest.mark.parametrize("files", [(GPU_FILE,), (GPU_FILE, CPU_FILE)], ids=["gpu", "cpu-override"])
def test_compose_files_follow_the_specification(files) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(_replicas_as_int(load(*files)))


def test_the_schema_rejects_a_misspelled_key() -> None:
    model = _replicas_as_int(load(GPU_FILE))
    model["services"]["workers"]["stop_grace_periode"] = "20s"
    with pytest.raises(jsonschema.ValidationError, match="stop_grace_periode"):
        jsonschema.Draft7Validator(SCHEMA).validate(model)


def test_services_and_their_settings() -> None:
    gpu = load(GPU_FILE)
    services = gpu["services"]
    postgres, workers, dashboard = services["postgres"], services["workers"], services["dashboard"]

    assert re.fullmatch(r"postgres:\d+", postgres["image"]), "official image, pinned major version"
    assert "ports" not in postgres, "PostgreSQL is not published on the host"
    assert any("pg_isready" in part for part in postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") and not v.startswith("/") for v in postgres["volumes"])

    for name in ("workers", "dashboard", "report"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert workers["deploy"]["replicas"] == "2" and workers["restart"] == "unless-stopped"
    assert [d["capabilities"] for d in workers["deploy"]["resources"]["reservations"]["devices"]] == [["gpu"]]
    assert workers["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert any(v.endswith(":/locks") for v in workers["volumes"]), "GPU lock files on a shared volume"
    assert workers["environment"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    grace = float(workers["stop_grace_period"].rstrip("s"))
    study = tomllib.loads((ROOT / "studies" / "cifar10-regularization.toml").read_text())
    assert grace > study["fleet"]["stop_grace_seconds"], "Docker must wait longer than the worker's own grace"

    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]
    assert services["report"]["profiles"] == ["tools"]
    assert workers["environment"]["SWEEPER_STORAGE"] == "postgresql://sweeper:change-me@postgres:5432/sweeper"

    cpu = load(GPU_FILE, CPU_FILE)["services"]["workers"]
    assert "resources" not in cpu.get("deploy", {}) and cpu["deploy"]["replicas"] == "2"
    assert "--gpu" in cpu["command"] and cpu["command"][cpu["command"].index("--gpu") + 1] == "none"
    assert cpu["build"]["args"]["BASE_IMAGE"] == "tensorflow/tensorflow:2.21.0"


def test_the_password_must_be_set() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        load(GPU_FILE, env={k: v for k, v in dotenv().items() if k != "POSTGRES_PASSWORD"})


@pytest.mark.parametrize("files", [(GPU_FILE,), (GPU_FILE, CPU_FILE)], ids=["gpu", "cpu-override"])
def test_every_command_is_a_real_sweeper_command(files) -> None:
    for name, service in load(*files)["services"].items():
        if "command" not in service:
            continue
        args = build_parser().parse_args(service["command"])  # exits (SystemExit) on anything unknown
        assert args.command in ("worker", "dashboard", "report"), name
        if args.command == "worker":
            assert (ROOT / args.study_file).is_file()


def test_environment_used_by_commands_is_defined() -> None:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", GPU_FILE.read_text() + CPU_FILE.read_text()))
    assert names <= set(dotenv()), names - set(dotenv())


def test_dockerfile_pins_its_base_runs_unprivileged_and_installs_this_version() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    image, tag = base.split(":")
    assert image == "tensorflow/tensorflow" and re.fullmatch(r"\d+\.\d+\.\d+-gpu", tag)
    tf_range = next(d for d in project["optional-dependencies"]["gpu"] if d.startswith("tensorflow"))
    major_minor = tuple(int(x) for x in tag.split("-")[0].split(".")[:2])
    upper = tuple(int(x) for x in re.search(r"<(\d+)\.(\d+)", tf_range).groups())
    lower = tuple(int(x) for x in re.search(r">=(\d+)\.(\d+)", tf_range).groups())
    assert lower <= major_minor < upper, f"base image TensorFlow {tag} outside the project's {tf_range}"
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert f'org.opencontainers.image.version="{project["version"]}"' in dockerfile
    assert re.search(r"pip install \.", dockerfile) and "pip install -e" not in dockerfile
    assert 'ENTRYPOINT ["sweeper"]' in dockerfile
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignored[0] == "*", "everything is left out of the build context first"
    assert {line.lstrip("!").rstrip("/") for line in ignored if line.startswith("!")} == {
        "pyproject.toml",
        "README.md",
        "sweeper",
        "studies",
    }


def test_compose_topology_runs_here(pg_url, cli_env, tmp_path) -> None:
    """PostgreSQL, then the exact `workers` command ×2 on the smoke study, then the exact `dashboard`."""
    services = load(GPU_FILE)["services"]
    # The containers' environment, with the storage pointed at the test server; cwd is the image's WORKDIR.
    env = {
        **cli_env,
        **services["workers"]["environment"],
        "SWEEPER_STORAGE": pg_url,
        "SWEEPER_GPU_LOCK_DIR": str(tmp_path / "locks"),
    }
    worker_command = [("studies/smoke.toml" if a.endswith(".toml") else a) for a in services["workers"]["command"]]
    assert worker_command[:2] == ["worker", "studies/smoke.toml"]

    def start(command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            sweeper_command(*command), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    workers = [start(worker_command) for _ in range(2)]
    dashboard = start(services["dashboard"]["command"])
    try:
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert_exact_budget(pg_url, "smoke", 6)
        port = services["dashboard"]["ports"][0].split(":")[-1]
        wait_for(lambda: b"smoke" in _get(f"http://127.0.0.1:{port}/api/studies"), timeout=60, what="the dashboard")
    finally:
        dashboard.terminate()
        output = dashboard.communicate(timeout=20)[0]
    assert dashboard.returncode == 0, output
    assert "change-me" not in output


def _get(url: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return b""
