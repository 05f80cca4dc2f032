"""Admission control, size and length limits, API keys, CORS and draining, over the scripted engine."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import Gauge

from gateway.api.admission import AdmissionLimiter
from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import OverloadedError
from tests.unit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


def gauge() -> Gauge:
    from prometheus_client import CollectorRegistry

    return Gauge("waiting", "test", registry=CollectorRegistry())


async def test_limiter_queues_then_refuses_then_hands_slots_over() -> None:
    limiter = AdmissionLimiter(max_active=1, max_waiting=1, wait_timeout=5, waiting_gauge=gauge())
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    with pytest.raises(OverloadedError):
        await limiter.acquire()  # the queue (1) is full
    limiter.release()  # the slot passes to the waiter
    await asyncio.wait_for(waiter, 1)
    assert limiter.active == 1
    limiter.release()
    assert limiter.active == 0


async def test_limiter_wait_times_out_with_429() -> None:
    limiter = AdmissionLimiter(max_active=1, max_waiting=5, wait_timeout=0.05, waiting_gauge=gauge())
    await limiter.acquire()
    with pytest.raises(OverloadedError, match=r"0\.05 s"):
        await limiter.acquire()
    limiter.release()
    assert limiter.active == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = AdmissionLimiter(max_active=1, max_waiting=5, wait_timeout=5, waiting_gauge=gauge())
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.active == 0
    await limiter.acquire()  # free again


@pytest.fixture
def settings() -> Settings:
    return Settings(
        max_concurrent_requests=2,
        max_queued_requests=1,
        queue_timeout_s=0.2,
        max_body_bytes=4096,
        max_prompt_tokens=50,
        api_keys="sk-one,sk-two",
        cors_origins="https://app.example",
    )


AUTH = {"Authorization": "Bearer sk-two"}


async def test_overload_gives_429_with_retry_after_and_never_5xx(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.delay_s = 0.04  # 0.12 s per request: the queued one gets a slot before its 0.2 s wait ends
    responses = await asyncio.gather(*(client.post(CHAT, json=BODY, headers=AUTH) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 3  # 2 running + 1 queued at least
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    big = BODY | {"messages": [{"role": "user", "content": "x" * 10_000}]}
    response = await client.post(CHAT, json=big, headers=AUTH)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


async def test_prompt_over_limit_is_400_naming_the_limit(client: httpx.AsyncClient) -> None:
    long = BODY | {"messages": [{"role": "user", "content": "word " * 200}]}
    error = (await client.post(CHAT, json=long, headers=AUTH)).json()["error"]
    assert error["code"] == "context_length_exceeded" and "50 tokens" in error["message"]
    assert error["param"] == "messages"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"Authorization": "Basic sk-one"}, 401), (AUTH, 200)],
)
async def test_api_keys(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    response = await client.post(CHAT, json=BODY, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_health_and_metrics_open_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/v1/models")).status_code == 401


async def test_cors_only_for_configured_origins(client: httpx.AsyncClient) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    allowed = await client.options(CHAT, headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = await client.options(CHAT, headers=preflight | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_draining_refuses_new_requests_and_readiness(client: httpx.AsyncClient) -> None:
    transport = client._transport  # the in-process app
    app = transport.app  # type: ignore[attr-defined]
    app.state.drain.draining = True
    assert (await client.post(CHAT, json=BODY, headers=AUTH)).json()["error"]["code"] == "server_shutting_down"
    assert (await client.get("/health/ready")).status_code == 503
