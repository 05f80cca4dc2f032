"""Per-upstream and routing metrics of the upstream pools (labels: model, upstream address, policy, reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.telemetry.labelled import LabelledCounter as Counter
from gateway.telemetry.labelled import LabelledGauge as Gauge
from gateway.telemetry.labelled import LabelledHistogram as Histogram

# A request waits for an upstream slot from a few ms (a burst) up to the time-to-first-token limit (300 s).
SLOT_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class SlotMetrics:
    """One upstream's call slots (engine/upstream_slots.py): the limit in effect, and each wait for a slot."""

    limit: Any  # the gauge's child: calls open at once at most (0: no limit)
    wait: Any  # the histogram's child: seconds a request that found no free slot waited (given up or not)


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
        self.slot_limit = Gauge(
            "gateway_upstream_slots",
            "Calls the gateway opens at the upstream at once at most, summed over workers (0: no limit).",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.slot_wait = Histogram(
            "gateway_upstream_slot_wait_seconds",
            "Time requests that found every upstream slot taken waited for one (also those that gave up).",
            labels,
            registry=registry,
            buckets=SLOT_WAIT_BUCKETS,
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

    def slots(self, model: str, upstream: str) -> SlotMetrics:
        """The slot metrics of one upstream of a model."""
        return SlotMetrics(self.slot_limit.labels(model, upstream), self.slot_wait.labels(model, upstream))
