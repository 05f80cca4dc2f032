"""Optional OpenTelemetry tracing, and W3C trace context forwarded to Triton as gRPC metadata.

Without an OTLP endpoint (or without the SDK) nothing is recorded, but an incoming `traceparent`/`tracestate` is
still passed on to Triton unchanged, so Triton's own OpenTelemetry traces join the caller's trace. With one, the
gateway records a span per request and a child span per upstream call, and Triton gets the child's context.
Headers that are not W3C trace context are dropped, as the W3C spec asks: gRPC metadata must be printable ASCII,
and anything else made the upstream call fail (a 500, counted against a healthy replica).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.errors import ConfigurationError

try:
    from opentelemetry import propagate, trace
except ImportError:  # the API is optional: tracing is then limited to forwarding the incoming headers
    propagate = trace = None  # type: ignore[assignment]

TRACE_HEADERS = ("traceparent", "tracestate")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]{0,512}")  # W3C's 512 characters a vendor must pass on; printable ASCII
TRACER_NAME = "trtllm-gateway"


def configure_tracing(endpoint: str | None, service_name: str = "trtllm-gateway") -> bool:
    """Export spans over OTLP/HTTP to `endpoint`; False (and nothing done) when no endpoint is set."""
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError("--otlp-endpoint needs: pip install 'trtllm-gateway[tracing]'") from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True


def incoming_trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace-context headers of a request; none unless `traceparent` is well-formed, and `tracestate`
    only when it is printable ASCII of at most 512 characters."""
    parent = headers.get("traceparent")
    if parent is None or not _TRACEPARENT.fullmatch(parent):
        return {}
    state = headers.get("tracestate")
    if state is None or not _TRACESTATE.fullmatch(state):
        return {"traceparent": parent}
    return {"traceparent": parent, "tracestate": state}


def start_span(name: str, parent_headers: Mapping[str, str], attributes: Mapping[str, Any] | None = None) -> Any:
    """A started span under the trace in `parent_headers`, or None when nothing records spans."""
    if trace is None:
        return None
    parent = propagate.extract(dict(parent_headers)) if parent_headers else None
    span = trace.get_tracer(TRACER_NAME).start_span(name, context=parent, attributes=dict(attributes or {}))
    if not span.is_recording():
        return None
    return span


def trace_headers_of(span: Any, fallback: Mapping[str, str]) -> dict[str, str]:
    """Headers that carry `span` as the parent (or `fallback` unchanged when there is no span)."""
    if span is None:
        return dict(fallback)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier
