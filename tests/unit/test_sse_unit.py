"""api/sse.py at the ASGI level: keep-alive comments, refusals before the headers, a client that stops reading, and
the stream styles of the protocols (data-only with [DONE]; named events with a ping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.api.errors import OPENAI_ERRORS, ErrorShape
from gateway.api.sse import OPENAI_STREAM, Framing, SSEResponse, StreamStyle
from gateway.errors import ClientWriteTimeoutError, GatewayError, UpstreamRejectedError
from gateway.telemetry import RequestContext, current_request, set_current_request


class Client:
    """Records what the app sends; `stall_after` body messages, it stops reading (send never returns)."""

    def __init__(self, stall_after: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self._stall_after = stall_after
        self._gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        bodies = sum(m["type"] == "http.response.body" for m in self.messages)
        if message["type"] == "http.response.body" and self._stall_after is not None and bodies >= self._stall_after:
            await asyncio.Event().wait()  # a full socket buffer that nobody drains
        self.messages.append(message)

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


def error_event(error: GatewayError, body: bytes) -> list[tuple[bytes, bytes]]:
    """Chat's and completions' report of a failure after the stream started."""
    return [(b"error", body)]


OPENAI = Framing(OPENAI_STREAM, error_event, OPENAI_ERRORS)


async def serve(chunks: AsyncIterator[list[Any]], client: Client, keepalive_s: float = 0.1,
                write_timeout_s: float = 5.0, framing: Framing = OPENAI) -> None:  # fmt: skip
    response = SSEResponse(chunks, framing, keepalive_s, write_timeout_s)
    await asyncio.wait_for(response({"type": "http"}, client.receive, client.send), 5)


async def test_a_slow_first_token_gets_keepalive_comments_then_the_data() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        await asyncio.sleep(0.35)
        yield [b'{"a":1}']

    client = Client()
    await serve(chunks(), client)
    assert client.status == 200
    body = client.body
    assert body.startswith(b": keep-alive\n\n") and body.count(b": keep-alive\n\n") >= 2
    assert body.endswith(b'data: {"a":1}\n\ndata: [DONE]\n\n')


async def test_long_gaps_between_chunks_get_comments_too() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        yield [b"1"]
        await asyncio.sleep(0.25)
        yield [b"2", b"3"]

    client = Client()
    await serve(chunks(), client)
    assert client.body.startswith(b"data: 1\n\n: keep-alive\n\n")
    assert client.body.endswith(b"data: 2\n\ndata: 3\n\ndata: [DONE]\n\n")


async def test_a_refusal_before_any_output_keeps_its_status() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        await asyncio.sleep(0.01)
        raise UpstreamRejectedError("temperature out of range", param="temperature")
        yield []  # pragma: no cover

    client = Client()
    await serve(chunks(), client, keepalive_s=1.0)
    assert client.status == 400
    assert b'"param":"temperature"' in client.body and b"data:" not in client.body


async def test_a_refusal_after_the_keepalive_committed_is_an_error_event() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        await asyncio.sleep(0.25)
        raise UpstreamRejectedError("temperature out of range", param="temperature")
        yield []  # pragma: no cover

    client = Client()
    await serve(chunks(), client)
    assert client.status == 200
    assert client.body.startswith(b": keep-alive\n\n")
    assert client.body.endswith(b'"code":"upstream_rejected"}}\n\ndata: [DONE]\n\n')
    assert b"event: error\ndata: " in client.body


async def test_a_client_that_stops_reading_gets_its_own_timeout_and_the_chunks_are_closed() -> None:
    closed = asyncio.Event()

    async def chunks() -> AsyncIterator[list[bytes]]:
        try:
            while True:
                yield [b"x" * 100]
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    context = RequestContext("r1", "/v1/chat/completions")
    set_current_request(context)
    client = Client(stall_after=3)
    started = asyncio.get_running_loop().time()
    await serve(chunks(), client, keepalive_s=0.05, write_timeout_s=0.3)
    elapsed = asyncio.get_running_loop().time() - started
    assert closed.is_set() and 0.3 <= elapsed < 1.5
    assert isinstance(context.error, ClientWriteTimeoutError)
    assert current_request() is context
    set_current_request(None)


@pytest.mark.parametrize("keepalive_s", [0.05, 10.0])
async def test_many_chunks_pass_unchanged(keepalive_s: float) -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        for index in range(200):
            yield [str(index).encode()]

    client = Client()
    await serve(chunks(), client, keepalive_s=keepalive_s)
    expected = b"".join(b"data: %d\n\n" % i for i in range(200)) + b"data: [DONE]\n\n"
    assert client.body == expected


async def test_done_and_the_end_of_the_body_are_one_message() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        yield [b'{"a":1}']
        yield [b'{"a":2}', b'{"a":3}']

    client = Client()
    await serve(chunks(), client, keepalive_s=5.0)
    assert [(m["type"], m.get("body"), m.get("more_body")) for m in client.messages[1:]] == [
        ("http.response.body", b'data: {"a":1}\n\n', True),
        ("http.response.body", b'data: {"a":2}\n\ndata: {"a":3}\n\n', True),
        ("http.response.body", b"data: [DONE]\n\n", False),
    ]


async def test_a_stream_with_no_chunks_still_starts_and_ends_with_done() -> None:
    async def chunks() -> AsyncIterator[list[bytes]]:
        return
        yield []

    client = Client()
    await serve(chunks(), client, keepalive_s=5.0)
    assert client.status == 200
    assert client.messages[-1] == {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}


# A protocol of named events (as Responses and Messages are): its own ping, its own failure events, its own errors.
NAMED = StreamStyle(named=True, ping=(b"ping", b'{"type": "ping"}'))
TEAPOT = ErrorShape(
    status=lambda error: 418, body=lambda error: b'{"type":"error","message":"' + error.message.encode() + b'"}'
)


def named_failure(error: GatewayError, body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"error", body), (b"response.failed", b'{"seq":9}')]


async def test_named_events_get_event_lines_a_ping_and_no_done() -> None:
    async def chunks() -> AsyncIterator[list[tuple[bytes, bytes]]]:
        await asyncio.sleep(0.15)
        yield [(b"message_start", b'{"a":1}'), (b"content_block_delta", b'{"b":2}')]

    client = Client()
    await serve(chunks(), client, framing=Framing(NAMED, named_failure, TEAPOT))
    assert client.status == 200
    assert client.body.startswith(b'event: ping\ndata: {"type": "ping"}\n\n')
    assert client.body.endswith(b'event: message_start\ndata: {"a":1}\n\nevent: content_block_delta\ndata: {"b":2}\n\n')
    assert b"[DONE]" not in client.body and b": keep-alive" not in client.body


async def test_a_named_stream_reports_a_failure_with_the_encoders_events_in_the_routes_shape() -> None:
    async def chunks() -> AsyncIterator[list[tuple[bytes, bytes]]]:
        yield [(b"message_start", b"{}")]
        raise UpstreamRejectedError("bad value")

    client = Client()
    await serve(chunks(), client, keepalive_s=5.0, framing=Framing(NAMED, named_failure, TEAPOT))
    assert client.body == (
        b'event: message_start\ndata: {}\n\nevent: error\ndata: {"type":"error","message":"bad value"}\n\n'
        b'event: response.failed\ndata: {"seq":9}\n\n'
    )


async def test_a_refusal_before_any_output_is_in_the_routes_error_shape() -> None:
    async def chunks() -> AsyncIterator[list[tuple[bytes, bytes]]]:
        raise UpstreamRejectedError("bad value")
        yield []  # pragma: no cover

    client = Client()
    await serve(chunks(), client, keepalive_s=5.0, framing=Framing(NAMED, named_failure, TEAPOT))
    assert (client.status, client.body) == (418, b'{"type":"error","message":"bad value"}')
