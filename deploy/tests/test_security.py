"""Every container of the deployment runs as a numeric non-root user, with all capabilities dropped, no
privilege escalation and a read-only root filesystem: checked over the Helm chart rendered with every
toggle, the plain manifests in deploy/k8s/, both compose files as compose resolves them, and the
project's Dockerfiles (whose USER is what the compose services run as)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "lipsync"
MANIFESTS = REPO / "deploy" / "k8s"
STACK = REPO / "deploy" / "compose" / "compose.yaml"
CI_OVERRIDE = REPO / "deploy" / "compose" / "compose.ci.yaml"
DOCKERFILES = {
    "lipsync/lipsync-server": REPO / "services" / "lipsync-server" / "Dockerfile",
    "lipsync/proxy": REPO / "services" / "proxy" / "Dockerfile",
    "lipsync/nginx": REPO / "deploy" / "nginx" / "Dockerfile",
    "lipsync/otlp-sink": REPO / "deploy" / "otlp-sink" / "Dockerfile",
}
#: Every toggle of the chart at once, so that optional workloads and volumes are checked too.
EVERYTHING_ON = (
    "server.gpu.enabled=true",
    "ingress.enabled=true",
    "server.models.existingClaim=lipsync-models",
    "jaeger.enabled=true",
    "networkPolicy.enabled=true",
)
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|API_?KEY|CREDENTIAL", re.IGNORECASE)

Object = dict[str, Any]


def render(helm: str, sets: tuple[str, ...]) -> list[Object]:
    command = [helm, "template", "lipsync", str(CHART), "--kube-version", "1.30.0"]
    for value in sets:
        command += ["--set", value]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def plain_manifests() -> list[Object]:
    return [
        document
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def pod_specs(objects: list[Object]) -> Iterator[tuple[str, Object]]:
    """(kind/name, pod spec) of every object that runs pods."""
    for item in objects:
        if item["kind"] not in POD_KINDS:
            continue
        spec = item["spec"]
        if item["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec if item["kind"] == "Pod" else spec["template"]["spec"]
        yield f"{item['kind']}/{item['metadata']['name']}", pod


def problems_of_pod(pod: Object) -> list[str]:
    """What about one pod spec breaks the rules; empty when it keeps them all."""
    found = []
    context = pod.get("securityContext", {})
    if context.get("runAsNonRoot") is not True:
        found.append("pod runAsNonRoot is not true")
    for key in ("runAsUser", "runAsGroup"):
        value = context.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            found.append(f"pod {key} is {value!r}, not a numeric non-root id")
    if context.get("seccompProfile") != {"type": "RuntimeDefault"}:
        found.append("pod seccompProfile is not RuntimeDefault")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"pod shares the host ({key})")
    if pod.get("automountServiceAccountToken") is not False:
        found.append("the service account token is mounted")
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            found.append(f"volume {volume['name']} is a hostPath")
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name = container["name"]
        own = container.get("securityContext", {})
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if own.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: the root filesystem is writable")
        if own.get("capabilities") != {"drop": ["ALL"]}:
            found.append(f"{name}: capabilities are {own.get('capabilities')!r}, not drop ALL (and add none)")
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        if own.get("runAsUser") == 0 or own.get("runAsNonRoot") is False:
            found.append(f"{name}: runs as root")
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]) and "value" in variable:
                found.append(f"{name}: secret-like variable {variable['name']} has a literal value")
    return found


@pytest.mark.parametrize("sets", [(), EVERYTHING_ON], ids=["defaults", "every toggle on"])
def test_every_pod_of_the_chart_is_locked_down(helm: str, sets: tuple[str, ...]) -> None:
    objects = render(helm, sets)
    pods = dict(pod_specs(objects))

    assert {"Deployment/lipsync-server", "Deployment/lipsync-proxy", "Deployment/lipsync-nginx"} <= set(pods)
    assert {name: problems_of_pod(pod) for name, pod in pods.items()} == {name: [] for name in pods}


def test_every_pod_of_the_plain_manifests_is_locked_down() -> None:
    pods = dict(pod_specs(plain_manifests()))

    assert len(pods) >= 3
    assert {name: problems_of_pod(pod) for name, pod in pods.items()} == {name: [] for name in pods}


def test_a_pod_that_breaks_a_rule_is_caught() -> None:
    pod = next(pod for _, pod in pod_specs(plain_manifests()))
    broken = {**pod, "hostNetwork": True, "containers": [{**pod["containers"][0], "securityContext": {}}]}

    found = problems_of_pod(broken)

    assert "pod shares the host (hostNetwork)" in found
    assert any("allowPrivilegeEscalation" in problem for problem in found)
    assert any("writable" in problem for problem in found)


def test_only_nginx_takes_traffic_from_outside_the_cluster(helm: str) -> None:
    objects = render(helm, EVERYTHING_ON)
    exposed = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service" and o["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort")
    }
    backends = {
        path["backend"]["service"]["name"]
        for o in objects
        if o["kind"] == "Ingress"
        for rule in o["spec"]["rules"]
        for path in rule["http"]["paths"]
    }

    assert exposed <= {"lipsync-nginx"}
    assert backends == {"lipsync-nginx"}


# --- compose and images ----------------------------------------------------------------------------


def compose_config(compose: list[str], *files: Path) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if k != "LIPSYNC_MODELS_DIR"}
    command = [*compose, *(arg for path in files for arg in ("-f", str(path))), "config"]
    result = subprocess.run(command, capture_output=True, text=True, env=environ, cwd=REPO)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


def image_user(dockerfile: Path) -> str:
    """The USER of the Dockerfile's final stage."""
    stages = re.split(r"^FROM\s", dockerfile.read_text(), flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)\s*$", stages[-1], flags=re.MULTILINE)
    assert users, f"{dockerfile}: the final stage sets no USER"
    return str(users[-1])


def is_numeric_non_root(user: str) -> bool:
    ids = user.split(":")
    return len(ids) <= 2 and all(part.isdigit() and int(part) > 0 for part in ids)


@pytest.mark.parametrize("dockerfile", DOCKERFILES.values(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_project_image_runs_as_a_numeric_non_root_user_with_no_secrets(dockerfile: Path) -> None:
    text = dockerfile.read_text()

    assert is_numeric_non_root(image_user(dockerfile))
    assert not [
        line for line in text.splitlines() if re.match(r"^(ENV|ARG)\s", line) and SECRET_NAME.search(line)
    ]
    assert re.search(r"^ENTRYPOINT \[", text, flags=re.MULTILINE), "exec-form entrypoint"


@pytest.mark.parametrize(
    "files", [(STACK,), (STACK, CI_OVERRIDE)], ids=["compose.yaml", "with compose.ci.yaml"]
)
def test_every_compose_service_is_locked_down_and_runs_as_non_root(
    compose: list[str], files: tuple[Path, ...]
) -> None:
    services = compose_config(compose, *files)
    problems: dict[str, list[str]] = {}
    for name, service in services.items():
        found = []
        if service.get("read_only") is not True:
            found.append("root filesystem writable")
        if service.get("cap_drop") != ["ALL"] or service.get("cap_add"):
            found.append(f"capabilities {service.get('cap_drop')!r} / {service.get('cap_add')!r}")
        if "no-new-privileges:true" not in service.get("security_opt", []):
            found.append("new privileges allowed")
        if service.get("privileged") or service.get("network_mode") == "host" or service.get("pid") == "host":
            found.append("privileged or sharing the host")
        user = service.get("user") or image_user(DOCKERFILES[service["image"].split(":")[0]])
        if not is_numeric_non_root(str(user)):
            found.append(f"runs as {user!r}")
        for mount in service.get("volumes", []):
            source = mount.get("source", "") if isinstance(mount, dict) else str(mount).split(":")[0]
            if "docker.sock" in source:
                found.append("mounts the Docker socket")
        problems[name] = found

    assert problems == {name: [] for name in services}
