"""What operators run before they deploy, offline, on what sweeper ships: checkov on the rendered
Kubernetes overlays, the Dockerfile and the compose files; hadolint on the Dockerfile; bandit on
sweeper/. Each finding is fixed or skipped with its reason beside it (.checkov.yaml, a
`checkov.io/skip` annotation, a `checkov:skip` or `hadolint ignore` comment, a `# nosec` comment),
so any new finding fails here. The tools live in .venv/ops (`make test`, tests/operator-tools.txt).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.system.test_kubernetes import OVERLAYS, render

TOOLS = ROOT / ".venv" / "ops" / "bin"


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {TOOLS}: `make test` installs tests/operator-tools.txt there")
    return str(path)


def checkov(*targets: str) -> dict:
    """Checkov's JSON summary; --skip-download keeps it offline (no Prisma Cloud mappings)."""
    command = [tool("checkov"), "--config-file", str(ROOT / ".checkov.yaml"), "--skip-download", "-o", "json", *targets]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
              for report in reports for c in report["results"]["failed_checks"]]  # fmt: skip
    assert not failed, "\n".join(failed)
    assert result.returncode == 0, result.stderr[-2000:]
    return {report["check_type"]: report["summary"] for report in reports}


def test_checkov_finds_nothing_unexplained_in_the_rendered_overlays(tmp_path: Path) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))

    summary = checkov("--framework", "kubernetes", "-d", str(tmp_path))

    assert summary["kubernetes"]["passed"] > 300 * len(OVERLAYS), summary  # it really scanned the workloads


def test_checkov_finds_nothing_unexplained_in_the_dockerfile() -> None:
    # Checkov has no checks for compose files; tests/system/test_docker_compose.py checks theirs.
    summary = checkov("--framework", "dockerfile", "-f", "Dockerfile")

    assert summary["dockerfile"]["passed"] > 10, summary


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run([tool("hadolint"), "Dockerfile"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bandit_finds_nothing_unexplained_in_sweeper() -> None:
    command = [tool("bandit"), "-c", "pyproject.toml", "-r", "sweeper", "-f", "json", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(result.stdout)
    found = [f"{r['test_id']} {r['filename']}:{r['line_number']} {r['issue_text']}" for r in report["results"]]
    assert not found, "\n".join(found)
    assert report["metrics"]["_totals"]["loc"] > 1000, "bandit read sweeper's code"
    assert result.returncode == 0, result.stderr
