"""The Grafana dashboard and Prometheus config in docker/: well-formed, and every metric they query is exported."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from gateway.telemetry import GatewayMetrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"
DASHBOARD = DOCKER / "grafana" / "trtllm-gateway-dashboard.json"
TRITON_METRICS = DOCKER / "grafana" / "triton_metrics.txt"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

# A metric name in PromQL: a gateway_/nv_ identifier followed by a selector, a range, a closing paren, a comma
# (label_values(...)), whitespace or the end of the expression.
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])((?:gateway|nv)_[A-Za-z0-9_:]*)(?=[\s{\[),]|$)")
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
BUILTIN_VARIABLES = frozenset({"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"})
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Sample names per family type as prometheus-client exposes them. `_created` is left out on purpose: it is not
# exported in multiprocess mode (--workers N), so a dashboard must not depend on it.
SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),  # prometheus-client summaries have no quantiles
    "info": ("_info",),
}
GRID_COLUMNS = 24


def family_sample_names(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Family name -> the sample names it exports, from the registry's families (labelled ones have no samples yet)."""
    out: dict[str, set[str]] = {}
    for family in registry.collect():
        names = {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
        names.update(sample.name for sample in family.samples if not sample.name.endswith("_created"))
        out[family.name] = names
    return out


def gateway_metric_names() -> set[str]:
    """Every sample name the gateway exports (e.g. gateway_requests_total, gateway_request_duration_seconds_bucket)."""
    return set().union(*family_sample_names(GatewayMetrics().registry).values())


def triton_metric_names() -> set[str]:
    """The names captured from the real tritonserver's /metrics (docker/grafana/triton_metrics.txt)."""
    lines = (line.strip() for line in TRITON_METRICS.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def load_dashboard() -> dict[str, Any]:
    """The checked-in dashboard."""
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with the children of collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variable_query(variable: dict[str, Any]) -> str:
    """The PromQL of a query variable (stored as a string or as the query editor's object)."""
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and query variables."""
    exprs = [target.get("expr", "") for panel in all_panels(dashboard) for target in panel.get("targets", [])]
    exprs += [variable_query(v) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(expr: str) -> set[str]:
    """The gateway_/nv_ metric names an expression uses."""
    return set(METRIC_NAME.findall(expr))


def unknown_metrics(dashboard: dict[str, Any], known: set[str]) -> set[str]:
    """The metric names the dashboard queries that are not in `known`."""
    return {name for expr in expressions(dashboard) for name in metric_names(expr)} - known


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    """The dashboard, parsed once."""
    return load_dashboard()


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    """What the gateway and Triton really export."""
    return gateway_metric_names() | triton_metric_names()


def test_dashboard_header(dashboard: dict[str, Any]) -> None:
    """Identity, schema version and the datasource/model variables."""
    assert dashboard["uid"] == "trtllm-gateway"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["type"] == "query"
    assert variable_query(variables["model"]) == "label_values(gateway_requests_total, model)"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


def test_panels_have_unique_ids_and_titles(dashboard: dict[str, Any]) -> None:
    """Ids and titles are present and unique."""
    panels = list(all_panels(dashboard))
    assert len(panels) > 10
    ids = [panel["id"] for panel in panels]
    titles = [panel["title"] for panel in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(titles)
    assert len(set(titles)) == len(titles)


def test_every_panel_queries_prometheus(dashboard: dict[str, Any]) -> None:
    """Every non-row panel has targets with a non-empty expr, all on the datasource variable."""
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_panels_fit_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    """Panels stay within the 24 columns and do not cover each other."""
    boxes = []
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        boxes.append((panel["title"], pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"]))
    for i, (title, x0, y0, x1, y1) in enumerate(boxes):
        for other, ox0, oy0, ox1, oy1 in boxes[i + 1 :]:
            assert x1 <= ox0 or ox1 <= x0 or y1 <= oy0 or oy1 <= y0, f"{title!r} overlaps {other!r}"


def test_expressions_use_defined_variables(dashboard: dict[str, Any]) -> None:
    """Every $variable in PromQL is a template variable or a Grafana built-in."""
    defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
    for expr in expressions(dashboard):
        used = {braced or bare for braced, bare in VARIABLE.findall(expr)}
        assert used <= defined, (expr, used - defined)


def test_every_expression_names_a_metric(dashboard: dict[str, Any]) -> None:
    """The extractor finds at least one metric in each expression, so a miss cannot pass silently."""
    for expr in expressions(dashboard):
        assert metric_names(expr), expr


def test_dashboard_metrics_exist(dashboard: dict[str, Any], known_metrics: set[str]) -> None:
    """Every gateway_/nv_ name in the dashboard is one the gateway or Triton exports."""
    assert unknown_metrics(dashboard, known_metrics) == set()


@pytest.mark.parametrize(
    ("bad_name", "replaced"),
    [
        ("gateway_nonexistent_total", "gateway_requests_total"),
        ("gateway_requests", "gateway_requests_total"),  # a counter's family name is not a series
        ("gateway_time_to_first_token_seconds", "gateway_time_to_first_token_seconds_bucket"),
        ("nv_inference_nonexistent", "nv_inference_request_success"),
    ],
)
def test_unknown_metric_is_rejected(
    dashboard: dict[str, Any], known_metrics: set[str], bad_name: str, replaced: str
) -> None:
    """The checker rejects a dashboard mutated to query a metric nobody exports."""
    mutated = copy.deepcopy(dashboard)
    count = 0
    for panel in all_panels(mutated):
        for target in panel.get("targets", []):
            if replaced in metric_names(target["expr"]):
                target["expr"] = METRIC_NAME.sub(
                    lambda m: bad_name if m.group(1) == replaced else m.group(1), target["expr"]
                )
                count += 1
    assert count, f"no expression uses {replaced}"
    assert unknown_metrics(mutated, known_metrics) == {bad_name}


def test_extractor_finds_names_in_every_position() -> None:
    """Names before a selector, a range, a closing paren, a comma, a space and at the end are all found."""
    assert metric_names('sum(rate(gateway_a_total{model="x"}[5m]))') == {"gateway_a_total"}
    assert metric_names("rate(nv_b[1m]) / sum(nv_c) + nv_d and on() nv_e") == {"nv_b", "nv_c", "nv_d", "nv_e"}
    assert metric_names("label_values(gateway_f_total, model)") == {"gateway_f_total"}
    assert metric_names('x{label="gateway_g"} + foo_gateway_h{a="b"}') == set()


def test_sample_suffixes_match_prometheus_client() -> None:
    """The per-type suffixes agree with what prometheus-client exposes once a labelled metric has samples."""
    registry = CollectorRegistry()
    metrics = [
        Counter("c", "c", ["l"], registry=registry),
        Gauge("g", "g", ["l"], registry=registry),
        Histogram("h", "h", ["l"], registry=registry),
        Summary("s", "s", ["l"], registry=registry),
    ]
    expected = family_sample_names(registry)
    for metric in metrics:
        child = metric.labels("x")
        if isinstance(child, Counter | Gauge):
            child.inc()
        else:
            child.observe(1.0)
    exposed = {
        family.name: {s.name for s in family.samples if not s.name.endswith("_created")}
        for family in registry.collect()
    }
    assert exposed == expected


def test_gateway_metric_names() -> None:
    """The exported-name set has counters with _total, histograms' series and gauges, and no bare counter names."""
    names = gateway_metric_names()
    expected = {
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_time_to_first_token_seconds_count",
        "gateway_upstream_duration_seconds_sum",
        "gateway_requests_in_flight",
        "gateway_requests_waiting",
    }
    assert expected <= names
    assert "gateway_requests" not in names
    assert "gateway_time_to_first_token_seconds" not in names


def test_every_gateway_family_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    """Each metric family the gateway defines appears in at least one panel."""
    used = {name for expr in expressions(dashboard) for name in metric_names(expr)}
    families = family_sample_names(GatewayMetrics().registry)
    missing = sorted(family for family, samples in families.items() if not samples & used)
    assert missing == []


def test_no_dev_only_metrics(dashboard: dict[str, Any]) -> None:
    """The dev engine's dev_engine_* metrics are neither on the dashboard nor in the Triton list."""
    assert not any("dev_engine_" in expr for expr in expressions(dashboard))
    names = triton_metric_names()
    assert names and all(name.startswith("nv_") for name in names)
    assert {"nv_inference_request_success", "nv_inference_pending_request_count"} <= names


def test_prometheus_config() -> None:
    """Valid YAML with a 5 s interval and the gateway (:8000) and Triton (:8002) jobs on /metrics."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"gateway", "triton"}
    for name, port in (("gateway", 8000), ("triton", 8002)):
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [target for static in job["static_configs"] for target in static["targets"]]
        assert targets and all(target.endswith(f":{port}") for target in targets), (name, targets)


def test_grafana_provisioning() -> None:
    """The datasource is a Prometheus with the scrape interval; the dashboard provider reads files."""
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert [ds["type"] for ds in datasources] == ["prometheus"]
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert datasources[0]["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert len(providers) == 1
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"]
