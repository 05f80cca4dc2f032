"""Per-tenant metrics (label `tenant`: the keys file's tenant names, so bounded; never a key or its id)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.telemetry.labelled import LabelledCounter as Counter


class TenantMetrics:
    """What the keys, the limits and the accounting record."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_tenant_requests",
            "Generation requests admitted, by tenant and model.",
            ["tenant", "model"],
            registry=registry,
        )
        self.tokens = Counter(
            "gateway_tenant_tokens",
            "Tokens used by tenant and model; kind: prompt, cached (prompt tokens found in the KV cache), completion.",
            ["tenant", "model", "kind"],
            registry=registry,
        )
        self.refusals = Counter(
            "gateway_tenant_refusals",
            "Requests refused by a key's limits (limit: requests_per_minute, tokens_per_minute, request_too_large, "
            "concurrent_requests, tokens_per_day, tokens_per_month, limits_unavailable).",
            ["tenant", "limit"],
            registry=registry,
        )
        self.unchecked = Counter(
            "gateway_limits_unchecked",
            "Requests admitted without a limits check: the limits backend was unreachable (--limits-on-error open).",
            registry=registry,
        )
        self.backend_errors = Counter(
            "gateway_limits_backend_errors",
            "Failed or timed-out calls to the limits backend (Redis).",
            registry=registry,
        )
        self.key_reloads = Counter(
            "gateway_keys_reloads",
            "Keys file reloads by result: ok, or error (the file was refused and the previous keys stay).",
            ["result"],
            registry=registry,
        )
