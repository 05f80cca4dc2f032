"""Request ids, metrics and access logs over the scripted engine."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import UpstreamUnavailableError
from gateway.telemetry.logs import JsonFormatter, RequestIdFilter
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_request_id_is_echoed_and_used_in_response_and_upstream_ids(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    response = await client.post(CHAT, json=BODY, headers={"X-Request-Id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json()["id"].startswith("chatcmpl-trace-42-")
    assert fake_engine.requests[0].request_id == response.json()["id"]
    other = await client.post(CHAT, json=BODY, headers={"X-Request-Id": "trace-42"})
    assert other.json()["id"] != response.json()["id"]  # reused client ids still give unique upstream ids


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, json=BODY, headers={"X-Request-Id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_metrics_count_what_was_sent(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    await client.post(CHAT, json=BODY)
    await client.post(CHAT, json=BODY | {"stream": True})
    await client.post(CHAT, json=BODY | {"max_tokens": 2})
    await client.post(CHAT, json=BODY | {"n": 9})
    fake_engine.fail_with = UpstreamUnavailableError("down")
    await client.post(CHAT, json=BODY)
    text = (await client.get("/metrics")).text
    got = samples(text)
    endpoint = {"model": DEV_MODEL_NAME, "endpoint": CHAT}
    assert value(got, "gateway_requests_total", **endpoint, status="200", stream="false") == 2
    assert value(got, "gateway_requests_total", **endpoint, status="200", stream="true") == 1
    assert value(got, "gateway_requests_total", **endpoint, status="400", stream="false") == 1
    assert value(got, "gateway_requests_total", **endpoint, status="503", stream="false") == 1
    assert value(got, "gateway_completion_tokens_total", model=DEV_MODEL_NAME) == 3 + 3 + 2
    assert value(got, "gateway_prompt_tokens_total", model=DEV_MODEL_NAME) == 7 * 3
    assert value(got, "gateway_finish_reasons_total", model=DEV_MODEL_NAME, reason="stop") == 2
    assert value(got, "gateway_finish_reasons_total", model=DEV_MODEL_NAME, reason="length") == 1
    assert value(got, "gateway_finish_reasons_total", model=DEV_MODEL_NAME, reason="error") == 1
    assert value(got, "gateway_upstream_errors_total", model=DEV_MODEL_NAME, kind="unavailable") == 1
    assert value(got, "gateway_time_to_first_token_seconds_count", **endpoint) == 3
    assert value(got, "gateway_request_duration_seconds_count", **endpoint, stream="false") == 4
    assert value(got, "gateway_requests_in_flight", endpoint=CHAT) == 0
    ttft_sum = value(got, "gateway_time_to_first_token_seconds_sum", **endpoint)
    duration_sum = sum(
        value(got, "gateway_request_duration_seconds_sum", **endpoint, stream=s) for s in ("true", "false")
    )
    assert 0 < ttft_sum < duration_sum


@pytest.mark.parametrize("stream", [False, True])
async def test_access_line_has_counts_and_no_text(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    response = await client.post(CHAT, json=BODY | {"stream": stream}, headers={"X-Request-Id": "log-me"})
    assert response.status_code == 200
    record = next(r for r in caplog.records if r.name == "gateway.access")
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200 and line["prompt_tokens"] == 7 and line["completion_tokens"] == 3
    assert line["finish_reason"] == "stop" and line["client_disconnected"] is False
    assert line["duration_ms"] >= line["ttft_ms"] >= 0
    assert "Hello" not in json.dumps(line) and "Hi" not in line["message"]


def test_labelled_children_are_looked_up_once_and_still_exported() -> None:
    metrics = GatewayMetrics()
    child = metrics.requests.labels("m", "/v1/chat/completions", "200", "true")
    assert metrics.requests.labels("m", "/v1/chat/completions", "200", "true") is child
    assert metrics.upstreams.in_flight.labels("m", "a:1") is metrics.upstreams.in_flight.labels("m", "a:1")
    child.inc()
    metrics.requests.labels(model="m", endpoint="/v1/completions", status="400", stream="false").inc(2)
    text = metrics.exposition().decode()
    assert 'gateway_requests_total{endpoint="/v1/chat/completions",model="m",status="200",stream="true"} 1.0' in text
    assert 'gateway_requests_total{endpoint="/v1/completions",model="m",status="400",stream="false"} 2.0' in text
