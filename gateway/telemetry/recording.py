"""At the end of a request: its metrics and its one access-log line."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.errors import (
    ClientWriteTimeoutError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from gateway.telemetry.context import RequestContext
from gateway.telemetry.logs import ACCESS_LOGGER
from gateway.telemetry.metrics import GatewayMetrics

access_log = logging.getLogger(ACCESS_LOGGER)


def upstream_error_kind(error: Exception | None) -> str | None:
    """Bounded label for an upstream failure, or None when the error was not the upstream's."""
    if not isinstance(error, UpstreamError):
        return None
    if isinstance(error, UpstreamUnavailableError):
        return "unavailable"
    if isinstance(error, UpstreamRejectedError):
        return "rejected"
    if isinstance(error, UpstreamTimeoutError):
        return "timeout"
    return "failed"


def _finish_reason(stream: Any, context: RequestContext) -> str:
    if isinstance(context.error, ClientWriteTimeoutError):
        return "client_timeout"  # the client stopped reading: not an error of the upstream or the gateway
    if context.error is not None:
        return "error"
    if stream.finish_reason is not None:
        return str(stream.finish_reason)
    return "cancelled"


def record_request(metrics: GatewayMetrics, context: RequestContext, method: str, status: int) -> None:
    """Update every metric for a finished request and write its access line."""
    now = time.perf_counter()
    duration = now - context.started
    model, endpoint, stream = context.model, context.endpoint, "true" if context.stream else "false"
    metrics.requests.labels(model, endpoint, str(status), stream).inc()
    metrics.request_duration.labels(model, endpoint, stream).observe(duration)
    if context.disconnected:
        metrics.client_disconnects.labels(model, endpoint).inc()
    kind = upstream_error_kind(context.error)
    if kind is not None:
        metrics.upstream_errors.labels(model, kind).inc()
    prompt_tokens = completion_tokens = 0
    first_piece: float | None = None
    reasons = []
    for text_stream in context.streams:  # one per choice
        reason = _finish_reason(text_stream, context)
        reasons.append(reason)
        metrics.finish_reasons.labels(model, reason).inc()
        if text_stream.usage is not None:
            prompt_tokens += text_stream.usage.prompt_tokens
            completion_tokens += text_stream.usage.completion_tokens
        if text_stream.first_piece_at is not None:
            first_piece = min(first_piece or text_stream.first_piece_at, text_stream.first_piece_at)
            tokens = text_stream.usage.completion_tokens if text_stream.usage is not None else 0
            if tokens > 1 and text_stream.last_piece_at is not None:
                per_token = (text_stream.last_piece_at - text_stream.first_piece_at) / (tokens - 1)
                metrics.time_per_output_token.labels(model).observe(per_token)
        if text_stream.ended_at is not None:
            metrics.upstream_duration.labels(model).observe(text_stream.ended_at - text_stream.started_at)
    if prompt_tokens:
        metrics.prompt_tokens.labels(model).inc(prompt_tokens)
    if completion_tokens:
        metrics.completion_tokens.labels(model).inc(completion_tokens)
    ttft = None if first_piece is None else first_piece - context.started
    if ttft is not None:
        metrics.time_to_first_token.labels(model, endpoint).observe(ttft)
    access_log.info(
        "%s %s %d",
        method,
        endpoint,
        status,
        extra={
            "fields": {
                "model": model,
                "status": status,
                "stream": context.stream,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "ttft_ms": None if ttft is None else round(ttft * 1000, 2),
                "duration_ms": round(duration * 1000, 2),
                "finish_reason": ",".join(reasons) or None,
                "client_disconnected": context.disconnected,
                "upstream": ",".join(context.upstreams) or None,
            }
        },
    )
