"""Bodies are read whole before admission: slow senders hold no slot, stalled bodies get a 408, clients that
leave (mid-body, or while waiting in line) give up their place and are recorded as 499."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from gateway.api.request_body import RequestBodyMiddleware
from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME
from tests.unit.asgi_driver import start
from tests.unit.fake_engine import FakeEngine
from tests.unit.test_telemetry_unit import samples, value

CHAT = "/v1/chat/completions"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def settings() -> Settings:
    return Settings(max_concurrent_requests=1, max_queued_requests=1, queue_timeout_s=5, body_timeout_s=0.3)


def requests_with_status(app: FastAPI, status: str, stream: str = "false", model: str = "unknown") -> float:
    """Requests recorded with this status (model "unknown": refused before the body was read)."""
    got = samples(app.state.metrics.exposition().decode())
    return value(got, "gateway_requests_total", model=model, endpoint=CHAT, status=status, stream=stream)


def saturation(app: FastAPI) -> float:
    return value(samples(app.state.metrics.exposition().decode()), "gateway_saturation_ratio")


async def test_slow_senders_hold_no_slot_and_are_not_saturation(app: FastAPI) -> None:
    slow = [start(app, CHAT, BODY, split=9, stall=True) for _ in range(3)]  # 9 bytes, then nothing
    await asyncio.sleep(0.05)
    assert saturation(app) == 0.0
    client, task = start(app, CHAT, BODY)
    await asyncio.wait_for(task, 2)
    assert client.status == 200  # with one slot and one queue place: a 429 if the slow ones held them
    for _, slow_task in slow:
        await asyncio.wait_for(slow_task, 2)


async def test_a_stalled_body_gets_a_408_in_openai_shape_and_the_connection_closed(app: FastAPI) -> None:
    client, task = start(app, CHAT, BODY, split=9, stall=True)
    await asyncio.wait_for(task, 2)
    assert client.status == 408 and client.headers[b"connection"] == b"close"
    error = json.loads(client.body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert "0.3 s" in error["message"]
    assert requests_with_status(app, "408") == 1


async def test_a_body_sent_in_pieces_arrives_whole(app: FastAPI, fake_engine: FakeEngine) -> None:
    client, task = start(app, CHAT, BODY | {"max_tokens": 2}, split=20)
    await asyncio.wait_for(task, 2)
    assert client.status == 200 and fake_engine.requests[0].max_tokens == 2


async def test_a_client_that_leaves_mid_body_is_a_499_and_gets_no_answer(app: FastAPI) -> None:
    client, task = start(app, CHAT, BODY, split=9, stall=True)
    await asyncio.sleep(0.05)
    client.leave.set()
    await asyncio.wait_for(task, 2)
    assert client.sent == []
    assert requests_with_status(app, "499") == 1 and requests_with_status(app, "500") == 0


async def test_a_client_leaving_the_queue_gives_up_its_place_and_never_reaches_the_engine(
    app: FastAPI, fake_engine: FakeEngine
) -> None:
    fake_engine.delay_s = 0.1  # the first request holds the only slot for 0.3 s
    running, running_task = start(app, CHAT, BODY)
    await asyncio.sleep(0.02)
    queued, queued_task = start(app, CHAT, BODY)
    await asyncio.sleep(0.02)
    assert saturation(app) == 2.0  # one running, one waiting
    queued.leave.set()
    await asyncio.wait_for(queued_task, 1)
    assert saturation(app) == 1.0
    assert queued.sent == [] and requests_with_status(app, "499") == 1
    later, later_task = start(app, CHAT, BODY)  # the queue place is free again: no 429
    await asyncio.wait_for(asyncio.gather(running_task, later_task), 3)
    assert running.status == later.status == 200
    assert len(fake_engine.requests) == 2  # the one that left never started an upstream call


async def test_a_running_request_does_not_keep_its_body() -> None:
    """Once the app has taken the body, the middleware holds no reference to it (a held stream would keep a
    whole agent's conversation otherwise)."""
    counts: list[tuple[int, int]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        alone = bytes(bytearray(body))  # equal bytes held by this frame only
        counts.append((sys.getrefcount(body), sys.getrefcount(alone)))

    incoming = [{"type": "http.request", "body": json.dumps(BODY).encode(), "more_body": False}]

    async def receive() -> Message:
        return incoming.pop()

    async def send(message: Message) -> None:
        raise AssertionError(f"nothing is sent here: {message}")

    body_length = str(len(incoming[0]["body"])).encode()
    scope = {"type": "http", "method": "POST", "path": CHAT, "headers": [(b"content-length", body_length)]}
    await RequestBodyMiddleware(app, max_bytes=1 << 20, timeout_s=5)(scope, receive, send)
    assert len(counts) == 1 and counts[0][0] == counts[0][1]
