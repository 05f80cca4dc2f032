"""Per-upstream and routing metrics of the upstream pools (labels: model, upstream address, policy, reason)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.telemetry.labelled import LabelledCounter as Counter
from gateway.telemetry.labelled import LabelledGauge as Gauge


class UpstreamMetrics:
    """What the pools record; registered on the app's registry (summed over workers like the rest)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model", "upstream"]
        self.healthy = Gauge(
            "gateway_upstream_healthy",
            "1 when the upstream is ready and not ejected, else 0.",
            labels,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.in_flight = Gauge(
            "gateway_upstream_in_flight",
            "Generations running on the upstream.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.requests = Counter(
            "gateway_upstream_requests", "Generations sent to the upstream.", labels, registry=registry
        )
        self.failures = Counter(
            "gateway_upstream_failures",
            "Generations the upstream failed (unreachable, timed out, broken stream).",
            labels,
            registry=registry,
        )
        self.ejections = Counter(
            "gateway_upstream_ejections",
            "Times passive health checking took the upstream out.",
            labels,
            registry=registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries",
            "Generations retried on another upstream after this one failed before the first token.",
            labels,
            registry=registry,
        )
        self.decisions = Counter(
            "gateway_routing_decisions",
            "Routing decisions by policy and reason (prefix_hit, prefix_miss, prefix_overflow, session, ...).",
            ["model", "policy", "reason"],
            registry=registry,
        )
        # Their ratio is how often routing found a warm cache (the engine's kv_cache_reused_blocks), by reason.
        self.routed_prompt_tokens = Counter(
            "gateway_routing_prompt_tokens",
            "Prompt tokens of routed generations whose engine reports KV-cache reuse, by decision reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.cached_tokens = Counter(
            "gateway_routing_cached_tokens",
            "Of those, the tokens the chosen upstream had in its KV cache, by decision reason.",
            ["model", "reason"],
            registry=registry,
        )
