"""api/connections.py in a real uvicorn server (in this process, over the fake engine), reached by raw sockets:
the header timeout, the connection limit (idle connections make room, busy ones refuse), unread bodies."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI

from gateway.api.connections import GuardedHttpToolsProtocol, RateLimitedWarning, connection_limit
from gateway.config import Settings
from gateway.devstack import free_port
from gateway.devstack.dev_model import DEV_MODEL_NAME
from tests.unit.fake_engine import FakeEngine
from tests.unit.test_telemetry_unit import samples, value

CHAT_BODY = json.dumps({"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}).encode()
LIMIT = 4


@pytest.fixture
def settings() -> Settings:
    return Settings(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=LIMIT, api_keys="sk-test")


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[int]:
    """The app served by uvicorn with the gateway's protocol; yields the port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=GuardedHttpToolsProtocol, log_config=None)
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve())
    while not instance.started:
        await asyncio.sleep(0.01)
    yield port
    instance.should_exit = True
    await asyncio.wait_for(task, 5)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def chat_request(body: bytes = CHAT_BODY, sent: int | None = None, key: str = "sk-test") -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body[:sent]


async def answer(reader: asyncio.StreamReader, timeout_s: float = 3) -> tuple[int | None, bytes]:
    """The status and body the server sent before it closed the connection (None: closed without a byte)."""
    raw = await asyncio.wait_for(reader.read(), timeout_s)
    if not raw:
        return None, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def dropped(app: FastAPI, reason: str) -> float:
    got = samples(app.state.metrics.exposition().decode())
    return value(got, "gateway_connections_dropped_total", reason=reason)


async def live(port: int) -> int:
    reader, writer = await connect(port)
    writer.write(b"GET /health/live HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    status, _ = await answer(reader)
    writer.close()
    assert status is not None
    return status


async def test_headers_trickled_past_the_timeout_get_a_408_and_the_connection_closed(app: FastAPI, server: int) -> None:
    reader, writer = await connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for piece in (b"POST /v1/chat/completions HTTP/1.1\r\n", b"host: t\r\n", b"x-slow: 1\r\n"):
        writer.write(piece)
        await asyncio.sleep(0.2)  # slowloris: a header line now and then, never the blank line
    status, body = await answer(reader)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert 0.45 < loop.time() - started < 1.5
    assert dropped(app, "header_timeout") == 1


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(app: FastAPI, server: int) -> None:
    reader, _ = await connect(server)
    assert await answer(reader) == (None, b"")
    assert dropped(app, "header_timeout") == 1


async def test_at_the_limit_the_longest_idle_connection_makes_room(app: FastAPI, server: int) -> None:
    idle = [await connect(server) for _ in range(LIMIT)]
    await asyncio.sleep(0.05)
    assert await live(server) == 200  # the oldest idle connection was closed for it
    oldest_reader, _ = idle[0]
    assert await answer(oldest_reader, 1) == (None, b"")
    assert dropped(app, "idle_evicted") == 1
    assert value(samples(app.state.metrics.exposition().decode()), "gateway_connections_open") == LIMIT - 1


async def test_at_the_limit_with_every_connection_busy_a_new_one_gets_a_429(
    app: FastAPI, server: int, fake_engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.api.connections")
    fake_engine.delay_s = 0.3  # each request runs for 0.9 s
    busy = [await connect(server) for _ in range(LIMIT)]
    for _, writer in busy:
        writer.write(chat_request())
    await asyncio.sleep(0.2)
    statuses = []
    for _ in range(3):
        reader, _ = await connect(server)
        statuses.append(await answer(reader))
    assert [status for status, _ in statuses] == [429] * 3
    assert json.loads(statuses[0][1])["error"]["type"] == "rate_limit_error"
    assert dropped(app, "refused") == 3
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 1  # one line for the burst, not one per connection
    for reader, _ in busy:  # the requests in progress were not disturbed
        assert (await reader.readuntil(b"\r\n"))[:12] == b"HTTP/1.1 200"


async def test_a_body_left_unread_after_a_401_ends_with_the_body_timeout(app: FastAPI, server: int) -> None:
    reader, writer = await connect(server)
    writer.write(chat_request(sent=9, key="wrong"))
    assert (await reader.readuntil(b"\r\n"))[:12] == b"HTTP/1.1 401"
    await asyncio.sleep(0.8)
    assert await reader.read() is not None and reader.at_eof()
    assert dropped(app, "unread_body") == 1


async def test_a_half_sent_body_gets_a_408(app: FastAPI, server: int) -> None:
    reader, writer = await connect(server)
    writer.write(chat_request(sent=9))
    status, body = await answer(reader)
    assert status == 408 and "body" in json.loads(body)["error"]["message"]


async def test_keep_alive_requests_each_get_the_header_timeout_afresh(server: int) -> None:
    reader, writer = await connect(server)
    for _ in range(3):
        await asyncio.sleep(0.3)  # 0.9 s in all: longer than one header timeout, each request well within it
        writer.write(b"GET /health/live HTTP/1.1\r\nhost: t\r\n\r\n")
        assert (await reader.readuntil(b"\r\n"))[:12] == b"HTTP/1.1 200"
        await reader.readuntil(b'{"status":"ok"}')


async def test_a_warning_repeated_in_a_burst_is_one_line_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.api.connections")
    warning = RateLimitedWarning("dropped %d", interval_s=0.1)
    for _ in range(50):
        warning.event()
    await asyncio.sleep(0.15)
    assert [r.getMessage() for r in caplog.records] == ["dropped 1", "dropped 49"]


def test_the_default_limit_leaves_file_descriptors_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("resource.getrlimit", lambda _: (1024, 4096))
    assert connection_limit(None) == 896
    assert connection_limit(100) == 100
