"""deploy/kubernetes without a cluster: every overlay renders and validates strictly, holds no
password, and the containers' commands and environments, taken from the rendered manifests, run
as real processes through a real PgBouncer in transaction pooling in front of PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from sweeper import studyfile
from tests.conftest import FIXTURE_DATA, QUICK_TRAINING, ROOT, study_file
from tests.fleet import assert_exact_budget, trials
from tests.pgbouncer import PgBouncer, running_pgbouncer, server_connections

DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir())
KUBERNETES_VERSION = "1.32.0"
PASSWORD = "k8s-test-pw"


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.fail("the Kubernetes tests need kubectl (with kustomize): make test installs it with apt-get as root")
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(resource: dict) -> dict | None:
    if resource["kind"] in ("Deployment", "StatefulSet", "Job"):
        return resource["spec"]["template"]["spec"]
    return None


def containers(resources: list[dict]) -> Iterator[tuple[dict, dict, dict]]:
    for resource in resources:
        spec = pod_spec(resource)
        for container in (spec or {}).get("containers", []):
            yield resource, spec, container


def by_name(resources: list[dict], kind: str, name: str) -> dict:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, "--quiet", str(rendered)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_password_literal_and_every_secret_from_the_secret(overlay: str) -> None:
    resources = render(overlay)
    assert not [r for r in resources if r["kind"] == "Secret"], "the Secret is created by hand, never rendered"
    for resource, spec, container in containers(resources):
        mounted = {
            v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v
        }  # volume name -> Secret
        paths = {m["mountPath"]: mounted[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in mounted}
        for env in container.get("env", []):
            if "PASSWORD" in env["name"]:
                if "value" in env:  # a path to a mounted Secret file, never the password itself
                    assert env["name"].endswith("_FILE"), (resource["metadata"]["name"], env)
                    assert any(env["value"].startswith(p) and s == "sweeper-secrets" for p, s in paths.items()), env
                else:
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "sweeper-secrets", env
            if env["name"] == "SWEEPER_STORAGE":
                assert sqlalchemy.engine.make_url(env["value"]).password is None, "no password in the storage URL"
    text = yaml.safe_dump_all(resources)
    assert "change-me" not in text and not re.search(r"://[^/@\s]+:[^/@\s]+@", text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_job_replaces_stopped_workers_and_ends_with_the_study(overlay: str) -> None:
    resources = render(overlay)
    job = by_name(resources, "Job", "sweeper-workers")
    spec = job["spec"]["template"]["spec"]
    worker = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    stopped = int(env["SWEEPER_STOPPED_EXIT_CODE"])
    assert stopped != 0, "an evicted worker must not count as the Job's success"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {
        "action": "Ignore",
        "onExitCodes": {"containerName": "worker", "operator": "In", "values": [stopped]},
    } in rules
    assert any(
        r["action"] == "Ignore" and r.get("onPodConditions", [{}])[0].get("type") == "DisruptionTarget" for r in rules
    )
    assert spec["restartPolicy"] == "Never" and job["spec"]["parallelism"] >= 1
    study = studyfile.load(ROOT / "studies" / Path(worker["args"][1]).name)
    assert spec["terminationGracePeriodSeconds"] > study.fleet.stop_grace_seconds
    assert {c["metadata"]["labels"]["app.kubernetes.io/name"] for c in [job["spec"]["template"]]} == {"sweeper-worker"}
    gpus = worker["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == (None if overlay == "cpu" else 1)
    for _, _, container in containers(resources):
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    dashboard = by_name(resources, "Service", "sweeper-dashboard")
    assert dashboard["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_under_the_restricted_pod_security_profile(overlay: str) -> None:
    """Pod Security "restricted": non-root, RuntimeDefault seccomp, no privilege escalation, every
    capability dropped; and a read-only root, with a writable volume wherever a process writes."""
    resources = render(overlay)
    for resource, spec, container in containers(resources):
        name = f"{resource['metadata']['name']}/{container['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["readOnlyRootFilesystem"] is True, name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, name
    dashboard = by_name(resources, "Deployment", "sweeper-dashboard")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert dashboard[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_pgbouncer_reaches_postgresql_and_only_sweepers_pods_reach_pgbouncer(overlay: str) -> None:
    resources = render(overlay)
    policies = {r["metadata"]["name"]: r["spec"] for r in resources if r["kind"] == "NetworkPolicy"}
    pods = {r["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] for r in resources if pod_spec(r)}
    bouncer = policies["pgbouncer"]
    assert bouncer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "pgbouncer"}
    (allowed,) = bouncer["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert set(allowed["values"]) == pods - {"pgbouncer", "postgres"}
    assert bouncer["ingress"][0]["ports"] == [{"port": 6432}]
    if "postgres" in pods:
        postgres = policies["postgres"]["ingress"]
        assert postgres == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pgbouncer"}}}],
                             "ports": [{"port": 5432}]}]  # fmt: skip
    else:  # a managed PostgreSQL: the policy for the StatefulSet goes with it
        assert "postgres" not in policies


def test_every_shipped_study_and_its_module_is_in_the_studies_configmap() -> None:
    resources = render(OVERLAYS[0])
    (studies,) = [
        r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith("sweeper-studies")
    ]
    shipped = {p.name for p in (ROOT / "studies").iterdir() if p.suffix in (".toml", ".py")}
    assert set(studies["data"]) == shipped


# --- the rendered commands, run as processes through a real PgBouncer ---


@pytest.fixture
def bouncer(pg_url: str) -> Iterator[PgBouncer]:
    with running_pgbouncer(pg_url, PASSWORD, pool_size=10) as pooler:
        yield pooler


def as_process(container: dict, bouncer: PgBouncer, secrets_dir: Path, study: Path) -> tuple[list[str], dict]:
    """The container's args and env, with the cluster's names mapped to this machine's (and its study
    file to `study`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPER_")}
    env.update(SWEEPER_DATA_DIR=str(FIXTURE_DATA), PYTHONUNBUFFERED="1")
    for item in container["env"]:
        value = item.get("value")
        if value is None:
            continue
        value = value.replace("pgbouncer:6432/sweeper", f"127.0.0.1:{bouncer.port}/{bouncer.database}")
        value = value.replace("file:///models", f"file://{secrets_dir.parent / 'models'}")
        env[item["name"]] = value.replace("/run/secrets/sweeper", str(secrets_dir))
    args = [a.replace("/studies/cifar10-regularization.toml", str(study)) for a in container["args"]]
    args = [study.stem if a == "cifar10-regularization" else a for a in args]
    return [sys.executable, "-m", "sweeper", *args], env


def test_rendered_workers_and_report_run_through_pgbouncer(bouncer: PgBouncer, pg_url: str, tmp_path: Path) -> None:
    resources = render("cpu")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "postgres-password").write_text(PASSWORD + "\n")
    worker = by_name(resources, "Job", "sweeper-workers")["spec"]["template"]["spec"]["containers"][0]
    study = study_file(
        tmp_path, study={"name": "smoke", "budget": 6}, training=QUICK_TRAINING, artifacts={"keep_top": 2}
    )
    command, env = as_process(worker, bouncer, secrets_dir, study)
    url = bouncer.url.replace("@", f":{PASSWORD}@")

    logs = [(tmp_path / f"worker-{i}.log").open("w") for i in range(2)]
    workers = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    peak = 0
    stopped = False
    admin = sqlalchemy.create_engine(pg_url)
    while any(w.poll() is None for w in workers):
        peak = max(peak, server_connections(admin, bouncer.database))
        running = [t for t in trials(url, "smoke") if t.state == TrialState.RUNNING]
        if not stopped and running and sum(t.state == TrialState.COMPLETE for t in trials(url, "smoke")) >= 1:
            workers[0].send_signal(signal.SIGTERM)  # an eviction: the Job must see a failure to replace it
            stopped = True
        time.sleep(0.3)
    codes = [w.wait() for w in workers]
    admin.dispose()
    output = "".join((tmp_path / f"worker-{i}.log").read_text() for i in range(2))
    assert codes == [int(env["SWEEPER_STOPPED_EXIT_CODE"]), 0], output
    assert_exact_budget(url, "smoke", 6)
    assert 0 < peak <= bouncer.pool_size, f"{peak} server connections for a pool of {bouncer.pool_size}"
    assert PASSWORD not in output
    assert 1 <= len(list((tmp_path / "models").iterdir())) <= 2, "the best models, kept on the shared volume"

    report = by_name(resources, "Job", "sweeper-report")["spec"]["template"]["spec"]["containers"][0]
    command, env = as_process(report, bouncer, secrets_dir, study)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "budget 6 finished" in result.stdout and "Best val_acc" in result.stdout


def test_the_study_lock_excludes_through_transaction_pooling(bouncer: PgBouncer) -> None:
    """Two workers' locks through the same pooler: the second waits until the first is released."""
    import threading

    from sweeper import storage
    from sweeper.storage import urls

    url = urls.resolve_url(bouncer.url.replace("@", f":{PASSWORD}@"))
    first, second = storage.connect(url), storage.connect(url)
    order: list[str] = []
    trying = threading.Event()

    def take_second() -> None:
        trying.set()
        with second.lock("study", "testing"):
            order.append("second")

    try:
        with first.lock("study", "testing"):
            thread = threading.Thread(target=take_second)
            thread.start()
            trying.wait(30)
            time.sleep(1)  # room for the second to take a lock that excluded no one
            order.append("first released")
        thread.join(30)
        assert order == ["first released", "second"]
    finally:
        first.close()
        second.close()
