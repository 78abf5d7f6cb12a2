"""The Helm chart: lint, renders of several value sets valid against the Kubernetes schema, and the
default render equal to the plain manifests in deploy/k8s/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "lipsync"
MANIFESTS = REPO / "deploy" / "k8s"
KUBE_VERSION = "1.30.0"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

VALUE_SETS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "gpu on": ("server.gpu.enabled=true",),
    "ingress on": (
        "ingress.enabled=true",
        "ingress.tlsSecretName=lipsync-ingress-tls",
        "ingress.className=nginx",
    ),
    "jaeger off": ("jaeger.enabled=false",),
    "hpa off": ("server.autoscaling.enabled=false", "proxy.autoscaling.enabled=false"),
    "network policy off": ("networkPolicy.enabled=false",),
    "models volume and metrics scrapers": (
        "server.models.existingClaim=lipsync-models",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ),
}

Object = dict[str, Any]


def render(helm: str, sets: Sequence[str] = (), release: str = "lipsync") -> list[Object]:
    """The chart's objects for these `--set` values."""
    command = [helm, "template", release, str(CHART), "--kube-version", KUBE_VERSION]
    for value in sets:
        command += ["--set", value]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def find(objects: list[Object], kind: str, name: str) -> Object:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def kinds_and_names(objects: list[Object]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def without_helm_labels(node: Any) -> Any:
    """A copy of `node` whose `labels` maps lack the labels only Helm needs."""
    if isinstance(node, dict):
        return {
            key: (
                {k: v for k, v in value.items() if k not in HELM_ONLY_LABELS}
                if key == "labels" and isinstance(value, dict)
                else without_helm_labels(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [without_helm_labels(item) for item in node]
    return node


def by_identity(objects: list[Object]) -> dict[tuple[str, str, str], Object]:
    return {(o["apiVersion"], o["kind"], o["metadata"]["name"]): o for o in objects}


def containers(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    """(deployment, container) for every container of every Deployment."""
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def services(objects: list[Object]) -> list[Object]:
    """The containers of the project's two services, which export traces."""
    found = [c for _, c in containers(objects) if c["name"] in ("lipsync-server", "lipsync-proxy")]
    assert len(found) == 2
    return found


def env_of(container: Object) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


@pytest.mark.parametrize("sets", [(), tuple(s for values in VALUE_SETS.values() for s in values)])
def test_the_chart_passes_helm_lint_strictly(helm: str, sets: tuple[str, ...]) -> None:
    command = [helm, "lint", "--strict", str(CHART)]
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid_kubernetes(
    helm: str, kubernetes_validate: ModuleType, value_set: str
) -> None:
    objects = render(helm, VALUE_SETS[value_set])
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_the_plain_manifests_are_valid_kubernetes(kubernetes_validate: ModuleType) -> None:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_the_default_render_equals_the_plain_manifests(helm: str) -> None:
    rendered = by_identity([without_helm_labels(o) for o in render(helm)])
    manifests = by_identity(
        [o for path in sorted(MANIFESTS.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]
    )
    assert sorted(rendered) == sorted(manifests), "run `make k8s-manifests` after changing the chart"
    for identity, obj in rendered.items():
        assert manifests[identity] == obj, f"{identity} differs; run `make k8s-manifests`"


def test_the_default_render_has_every_workload_of_the_design(helm: str) -> None:
    present = kinds_and_names(render(helm))
    for component in ("server", "proxy", "nginx", "jaeger"):
        assert ("Deployment", f"lipsync-{component}") in present
        assert ("Service", f"lipsync-{component}") in present
        assert ("ServiceAccount", f"lipsync-{component}") in present
    assert ("Service", "lipsync-server-headless") in present
    assert ("ConfigMap", "lipsync-nginx") in present
    assert ("ConfigMap", "lipsync-jaeger") in present
    for component in ("server", "proxy"):
        assert ("HorizontalPodAutoscaler", f"lipsync-{component}") in present
        assert ("PodDisruptionBudget", f"lipsync-{component}") in present
        assert ("NetworkPolicy", f"lipsync-{component}") in present


def test_every_container_runs_as_style_asks(helm: str) -> None:
    objects = render(helm, VALUE_SETS["gpu on"])
    for deployment, container in containers(objects):
        pod = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert isinstance(pod["securityContext"]["runAsUser"], int), name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == name, name
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), name
        assert all(port["name"] for port in container["ports"]), name


def test_the_server_is_probed_natively_over_grpc_health(helm: str) -> None:
    server = find(render(helm), "Deployment", "lipsync-server")["spec"]["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["grpc"] == {"port": 50051, "service": "lipsync.v1.LipSync"}
    assert server["startupProbe"]["grpc"]["service"] == "lipsync.v1.LipSync"
    assert server["livenessProbe"]["grpc"]["port"] == 50051


def test_the_proxy_is_probed_over_http_and_balances_over_the_headless_service(helm: str) -> None:
    objects = render(helm)
    proxy = find(objects, "Deployment", "lipsync-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert env_of(proxy)["GRPC_ADDR"] == "dns:///lipsync-server-headless:50051"
    assert find(objects, "Service", "lipsync-server-headless")["spec"]["clusterIP"] == "None"


def test_pods_get_longer_to_stop_than_the_services_grace_periods(helm: str) -> None:
    objects = render(helm)
    for name, variable in (
        ("lipsync-server", "LIPSYNC_GRACE_PERIOD"),
        ("lipsync-proxy", "PROXY_GRACE_PERIOD"),
    ):
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > float(env_of(pod["containers"][0])[variable])


def test_only_nginx_reaches_the_proxy_and_only_proxy_and_nginx_reach_the_server(helm: str) -> None:
    objects = render(helm)

    def allowed_components(policy_name: str) -> list[list[str]]:
        rules = find(objects, "NetworkPolicy", policy_name)["spec"]["ingress"]
        return [
            sorted(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"])
            for rule in rules
        ]

    assert allowed_components("lipsync-proxy") == [["nginx"]]
    assert allowed_components("lipsync-server") == [["nginx", "proxy"]]


def test_gpu_on_requests_gpus_and_runs_on_cuda(helm: str) -> None:
    default = find(render(helm), "Deployment", "lipsync-server")["spec"]["template"]["spec"]["containers"][0]
    gpu = find(render(helm, VALUE_SETS["gpu on"]), "Deployment", "lipsync-server")
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in default["resources"]["limits"]
    assert "LIPSYNC_DEVICE" not in env_of(default)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["memory"] == default["resources"]["limits"]["memory"]
    assert env_of(container)["LIPSYNC_DEVICE"] == "cuda"


def test_ingress_on_routes_its_host_to_nginx_over_https(helm: str) -> None:
    assert not [o for o in render(helm) if o["kind"] == "Ingress"]
    ingress = find(render(helm, VALUE_SETS["ingress on"]), "Ingress", "lipsync-nginx")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "lipsync-nginx", "port": {"name": "https"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "lipsync-ingress-tls"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_jaeger_off_removes_jaeger_and_turns_trace_export_off(helm: str) -> None:
    objects = render(helm, VALUE_SETS["jaeger off"])
    assert not [name for kind, name in kinds_and_names(objects) if "jaeger" in name]
    for container in services(objects):
        assert env_of(container)["OTEL_TRACES_EXPORTER"] == "none"
    for container in services(render(helm)):
        assert env_of(container)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://lipsync-jaeger:4317"


def test_an_explicit_otlp_endpoint_wins_over_jaeger(helm: str) -> None:
    objects = render(helm, ("jaeger.enabled=false", "otel.endpoint=http://collector:4317"))
    for container in services(objects):
        assert env_of(container)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"


def test_the_sampler_ratio_is_one_value_for_both_services(helm: str) -> None:
    for container in services(render(helm, ("otel.samplerArg=0.25",))):
        assert env_of(container)["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env_of(container)["OTEL_TRACES_SAMPLER_ARG"] == "0.25"


def test_hpa_off_fixes_the_replicas_and_drops_the_autoscalers(helm: str) -> None:
    default = render(helm)
    assert "replicas" not in find(default, "Deployment", "lipsync-server")["spec"]
    objects = render(helm, (*VALUE_SETS["hpa off"], "server.replicaCount=3"))
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert find(objects, "Deployment", "lipsync-server")["spec"]["replicas"] == 3
    assert find(objects, "Deployment", "lipsync-proxy")["spec"]["replicas"] == 2


def test_network_policy_off_removes_the_policies(helm: str) -> None:
    assert not [o for o in render(helm, VALUE_SETS["network policy off"]) if o["kind"] == "NetworkPolicy"]


def test_a_models_claim_is_mounted_read_only_as_the_models_dir(helm: str) -> None:
    objects = render(helm, VALUE_SETS["models volume and metrics scrapers"])
    pod = find(objects, "Deployment", "lipsync-server")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["LIPSYNC_MODELS_DIR"] == "/models"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["claimName"] == "lipsync-models"


def test_images_default_to_the_chart_app_version(helm: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["name"]: c["image"] for _, c in containers(render(helm))}
    assert images["lipsync-server"] == f"lipsync/lipsync-server:{app_version}"
    assert images["lipsync-proxy"] == f"lipsync/proxy:{app_version}"
    assert images["nginx"] == f"lipsync/nginx:{app_version}"
    overridden = {c["name"]: c["image"] for _, c in containers(render(helm, ("server.image.tag=abc123",)))}
    assert overridden["lipsync-server"] == "lipsync/lipsync-server:abc123"


def test_the_nginx_configmap_is_the_projects_nginx_conf(helm: str) -> None:
    config = find(render(helm), "ConfigMap", "lipsync-nginx")["data"]["nginx.conf"]
    assert config == (CHART / "files" / "nginx.conf").read_text()


def test_jaeger_is_v2_with_the_projects_config_and_probed_on_its_health_extension(helm: str) -> None:
    objects = render(helm, ("jaeger.maxTraces=500",))
    pod = find(objects, "Deployment", "lipsync-jaeger")["spec"]["template"]["spec"]
    jaeger = pod["containers"][0]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    assert jaeger["args"] == ["--config", "/etc/jaeger/config.yaml"]
    assert env_of(jaeger)["JAEGER_MAX_TRACES"] == "500"
    config = find(objects, "ConfigMap", "lipsync-jaeger")["data"]["config.yaml"]
    assert config == (CHART / "files" / "jaeger.yaml").read_text()
    assert "max_traces: ${env:JAEGER_MAX_TRACES:-10000}" in config
    mounts = {m["name"]: m["mountPath"] for m in jaeger["volumeMounts"]}
    assert mounts["config"] == "/etc/jaeger"
    assert {"name": "config", "configMap": {"name": "lipsync-jaeger"}} in pod["volumes"]
    # The healthcheckv2 extension's HTTP endpoint of files/jaeger.yaml; httpGet needs nothing in the image.
    health = {p["name"]: p["containerPort"] for p in jaeger["ports"]}["health"]
    assert "endpoint: 0.0.0.0:13133" in config
    assert health == 13133
    for probe in ("livenessProbe", "readinessProbe"):
        assert jaeger[probe]["httpGet"] == {"path": "/status", "port": "health"}


def test_another_release_points_nginx_at_its_own_services(helm: str) -> None:
    objects = render(helm, ("proxy.port=9000",), release="demo")
    config = find(objects, "ConfigMap", "demo-lipsync-nginx")["data"]["nginx.conf"]
    assert "server demo-lipsync-proxy:9000;" in config
    assert "server demo-lipsync-server:50051;" in config
    assert "lipsync-proxy:8086" not in config


def test_the_values_schema_refuses_unknown_and_invalid_values(helm: str) -> None:
    for bad in ("server.bogus=1", "server.logFormat=xml", "nginx.service.type=Magic"):
        result = subprocess.run(
            [helm, "template", "lipsync", str(CHART), "--kube-version", KUBE_VERSION, "--set", bad],
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0, bad
        assert "schema" in result.stderr, result.stderr


def test_every_value_is_documented() -> None:
    # Each leaf value, or a map above it (as for resources and annotations), has a comment right above.
    ancestors: list[tuple[int, bool]] = []  # (indentation, documented) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            indent = len(line) - len(line.lstrip())
            while ancestors and ancestors[-1][0] >= indent:
                ancestors.pop()
            documented = previous.startswith("#") or any(doc for _, doc in ancestors)
            is_leaf = not stripped.endswith(":")
            assert documented or not is_leaf, f"values.yaml line {number} has no comment: {line!r}"
            ancestors.append((indent, previous.startswith("#")))
        previous = stripped
