"""Metrics, logs and the per-request context."""

from gateway.telemetry.context import RequestContext, current_request, new_request_id, set_current_request
from gateway.telemetry.logs import ACCESS_LOGGER, LogFormat, configure_logging
from gateway.telemetry.metrics import GatewayMetrics

__all__ = [
    "ACCESS_LOGGER",
    "GatewayMetrics",
    "LogFormat",
    "RequestContext",
    "configure_logging",
    "current_request",
    "new_request_id",
    "set_current_request",
]
