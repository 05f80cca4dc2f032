"""W3C trace context: forwarded as is without tracing, re-parented under the gateway's spans with it."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.telemetry import tracing
from tests.unit.fake_engine import FakeEngine

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


async def test_traceparent_is_forwarded_unchanged_without_tracing(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    await client.post("/v1/chat/completions", json=BODY, headers={"traceparent": TRACEPARENT, "tracestate": "k=v"})
    assert dict(fake_engine.requests[0].trace_headers) == {"traceparent": TRACEPARENT, "tracestate": "k=v"}


@pytest.mark.parametrize(
    ("headers", "forwarded"),
    [
        ({"traceparent": "\xe9t\xe9", "tracestate": "k=v"}, {}),  # not W3C: nothing, tracestate neither
        ({"traceparent": TRACEPARENT.upper()}, {}),
        ({"traceparent": TRACEPARENT + "\x01"}, {}),
        ({"traceparent": TRACEPARENT, "tracestate": "k=\xe9"}, {"traceparent": TRACEPARENT}),
        ({"traceparent": TRACEPARENT, "tracestate": "k=" + "v" * 600}, {"traceparent": TRACEPARENT}),
    ],
)
def test_only_w3c_trace_context_is_forwarded(headers: dict[str, str], forwarded: dict[str, str]) -> None:
    """gRPC metadata must be printable ASCII: anything else failed the upstream call (a 500)."""
    assert tracing.incoming_trace_headers(headers) == forwarded


async def test_no_trace_headers_when_the_client_sends_none(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    await client.post("/v1/chat/completions", json=BODY)
    assert fake_engine.requests[0].trace_headers == ()


async def test_request_span_joins_the_callers_trace_and_parents_the_upstream_context(
    client: httpx.AsyncClient, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing.trace, "get_tracer", lambda name: provider.get_tracer(name))
    response = await client.post("/v1/chat/completions", json=BODY, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST /v1/chat/completions"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes["http.status_code"] == 200
    upstream = dict(fake_engine.requests[0].trace_headers)["traceparent"]
    assert upstream.split("-")[1] == TRACE_ID and upstream.split("-")[2] == format(span.context.span_id, "016x")


async def test_one_server_span_per_request_when_a_global_tracer_provider_is_set(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's own OpenTelemetry instrumentation (0.16x) stays off: the gateway's span is the only one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(tracing.trace, "get_tracer", lambda name, *args, **kwargs: provider.get_tracer(name))
    response = await client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200
    assert [span.name for span in exporter.get_finished_spans()] == ["POST /v1/chat/completions"]
