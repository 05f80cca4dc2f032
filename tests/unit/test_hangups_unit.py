"""Every client hang-up is recorded as 499 (nginx's "client closed request"): streamed or not, before or after
the first byte, in the metrics, the access line and the span; a server fault stays a 5xx."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.api.middleware import final_status
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import ClientWriteTimeoutError, UpstreamError
from gateway.telemetry import RequestContext, tracing
from tests.unit.asgi_driver import start
from tests.unit.fake_engine import FakeEngine
from tests.unit.test_request_body_unit import requests_with_status

CHAT = "/v1/chat/completions"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("leave_after_first_token", [False, True])
async def test_a_hang_up_is_a_499_in_metrics_and_the_access_line(
    app: FastAPI,
    fake_engine: FakeEngine,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
    leave_after_first_token: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(tracing.trace, "get_tracer", lambda name: provider.get_tracer(name))
    fake_engine.delay_s = 0.2  # the first token after 0.2 s
    client, task = start(app, CHAT, BODY | {"stream": stream})
    await asyncio.sleep(0.3 if leave_after_first_token else 0.05)
    if stream and leave_after_first_token:
        assert client.status == 200  # the response had started: the status on the wire was 200
    client.leave.set()
    await asyncio.wait_for(task, 2)
    label = "true" if stream else "false"
    assert requests_with_status(app, "499", label, DEV_MODEL_NAME) == 1
    assert requests_with_status(app, "500", label, DEV_MODEL_NAME) == 0
    assert requests_with_status(app, "200", label, DEV_MODEL_NAME) == 0
    access = next(r for r in caplog.records if r.name == "gateway.access")
    fields = access.fields  # type: ignore[attr-defined]
    assert fields["status"] == 499 and fields["client_disconnected"] is True
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["http.status_code"] == 499
    assert fake_engine.closed_early  # and the generation was stopped


def context() -> RequestContext:
    return RequestContext("id", "/v1/chat/completions")


def test_final_status_keeps_what_was_sent_when_the_client_stayed() -> None:
    assert final_status(context(), 200, body_done=True, failed=False) == 200
    assert final_status(context(), 503, body_done=True, failed=False) == 503


def test_a_stream_abandoned_before_any_status_is_a_499_not_the_default_500() -> None:
    left = context()
    left.disconnected = True
    assert final_status(left, 500, body_done=False, failed=False) == 499


def test_a_client_that_stopped_reading_is_a_499() -> None:
    stuck = context()
    stuck.error = ClientWriteTimeoutError("no write completed within 60 s")
    assert final_status(stuck, 200, body_done=False, failed=False) == 499 and stuck.disconnected


def test_a_server_fault_stays_a_5xx() -> None:
    broken = context()
    broken.error = UpstreamError("Triton failed")
    assert final_status(broken, 500, body_done=True, failed=False) == 500
    assert final_status(context(), 200, body_done=False, failed=True) == 500  # escaped after the 200 went out
    assert final_status(context(), 500, body_done=False, failed=False) == 500  # returned without a response
