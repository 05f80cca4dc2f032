"""Prometheus metrics, `gateway_` prefix, base units; correct with several worker processes.

With `--workers N` the CLI sets PROMETHEUS_MULTIPROC_DIR before the workers start; each worker then writes its
samples to files there and /metrics sums them (prometheus-client's multiprocess mode). Labels are bounded:
model names, endpoint paths, status codes, finish reasons and error kinds; never request ids or text.
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.telemetry.labelled import LabelledCounter as Counter
from gateway.telemetry.labelled import LabelledGauge as Gauge
from gateway.telemetry.labelled import LabelledHistogram as Histogram
from gateway.telemetry.tenant_metrics import TenantMetrics
from gateway.telemetry.upstream_metrics import UpstreamMetrics

# LLM latencies: first tokens in tens of ms to tens of s, whole requests up to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120, 300)
TOKEN_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)
FINISH_REASONS = ("stop", "length", "cancelled", "error")


def multiprocess_dir() -> str | None:
    """The shared folder of multiprocess mode, when several workers run."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class GatewayMetrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        live: dict[str, Literal["livesum"]] = {"multiprocess_mode": "livesum"}
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests by model, endpoint, status code and stream flag.",
            ["model", "endpoint", "status", "stream"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request arrival to the last byte of the response.",
            ["model", "endpoint", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from request arrival to the first generated text.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_per_output_token = Histogram(
            "gateway_time_per_output_token_seconds",
            "Inter-token latency: (last token time - first token time) / (output tokens - 1), per request.",
            ["model"],
            buckets=TOKEN_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time from the Triton call to its final response, per generation.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter("gateway_prompt_tokens", "Prompt tokens processed.", ["model"], registry=registry)
        self.completion_tokens = Counter(
            "gateway_completion_tokens", "Completion tokens generated.", ["model"], registry=registry
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight", "Requests being handled.", ["endpoint"], registry=registry, **live
        )
        self.waiting = Gauge("gateway_requests_waiting", "Requests waiting for admission.", registry=registry, **live)
        # The autoscaling signal. Each worker has its own limit, so workers report their own ratio and the busiest
        # one counts (the kernel spreads connections over workers evenly enough).
        self.saturation = Gauge(
            "gateway_saturation_ratio",
            "(running + queued generation requests) / --max-concurrent-requests; above 1 requests queue. "
            "0 without a concurrency limit.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.connections_open = Gauge(
            "gateway_connections_open", "Open HTTP client connections.", registry=registry, **live
        )
        self.connections_dropped = Counter(
            "gateway_connections_dropped",
            "HTTP connections the gateway closed on its own: refused at the connection limit, idle ones closed to "
            "make room (idle_evicted), headers not complete in time (header_timeout), a body still being sent "
            "long after its response (unread_body).",
            ["reason"],
            registry=registry,
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects",
            "Requests whose client left before the response ended.",
            ["model", "endpoint"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Failed upstream calls by kind (unavailable, rejected, timeout, failed).",
            ["model", "kind"],
            registry=registry,
        )
        self.finish_reasons = Counter(
            "gateway_finish_reasons",
            "Generations by how they ended: stop, length, cancelled, error.",
            ["model", "reason"],
            registry=registry,
        )

        self.upstreams = UpstreamMetrics(registry)
        self.tenants = TenantMetrics(registry)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (summed over workers in multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        collected = CollectorRegistry()
        MultiProcessCollector(collected, path=directory)
        return generate_latest(collected)
