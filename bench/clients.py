"""The two request loops of the load generator: OpenAI-compatible HTTP (SSE) and Triton gRPC (the direct floor)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import orjson
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.http_client import HttpConnection, HttpTarget, ResponseError
from bench.window import RequestClock, WindowStats

FINAL = "triton_final_response"
RETRY_PAUSE_S = 0.1  # after a failed request, so that a dead upstream does not spin the loop


class OpenAIExchange:
    """Sink of one chat completions response: content chunks feed the clock; errors and usage are kept."""

    __slots__ = ("chat", "clock", "done", "error", "status", "text")

    def __init__(self, clock: RequestClock, chat: bool = True) -> None:
        self.clock = clock
        self.chat = chat
        self.status = 0
        self.error: str | None = None
        self.done = False
        self.text: str | None = None

    def on_headers(self, status: int, now: float) -> None:
        """Status known: a 200 opens the stream."""
        self.status = status
        if status == 200:
            self.clock.open()

    def on_event(self, event: str, data: bytes, now: float) -> None:
        """One SSE event."""
        if self.status != 200 or event == "error":
            self.error = f"HTTP {self.status} event {event}: {data[:300]!r}"
            return
        if data == b"[DONE]":
            self.done = True
            return
        obj = orjson.loads(data)
        if "error" in obj:
            self.error = f"error chunk: {data[:300]!r}"
            return
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            piece = (choice.get("delta") or {}).get("content") if self.chat else choice.get("text")
            if piece:
                self.clock.content(now)
        usage = obj.get("usage")
        if usage:
            self.clock.usage_tokens = usage.get("completion_tokens") or 0

    def on_body(self, body: bytes, now: float) -> None:
        """A non-streamed response."""
        if self.status != 200:
            self.error = f"HTTP {self.status}: {body[:300]!r}"
            return
        obj = orjson.loads(body)
        choices = obj.get("choices") or [{}]
        self.text = (choices[0].get("message") or {}).get("content") if self.chat else choices[0].get("text")
        usage = obj.get("usage") or {}
        self.clock.usage_tokens = usage.get("completion_tokens") or 0
        self.done = True


class ResponsesExchange(OpenAIExchange):
    """Sink of one Responses API response: `response.output_text.delta` events are the content; the finished
    response (its event, or the body) carries the usage."""

    def on_event(self, event: str, data: bytes, now: float) -> None:
        """One named SSE event."""
        if self.status != 200 or event in ("error", "response.failed"):
            self.error = f"HTTP {self.status} event {event}: {data[:300]!r}"
        elif event == "response.output_text.delta":
            self.clock.content(now)
        elif event in ("response.completed", "response.incomplete"):
            self.clock.usage_tokens = orjson.loads(data)["response"]["usage"]["output_tokens"]
            self.done = True

    def on_body(self, body: bytes, now: float) -> None:
        """A non-streamed response."""
        if self.status != 200:
            self.error = f"HTTP {self.status}: {body[:300]!r}"
            return
        obj = orjson.loads(body)
        parts = [part for item in obj["output"] if item["type"] == "message" for part in item["content"]]
        self.text = "".join(part.get("text", "") for part in parts)
        self.clock.usage_tokens = obj["usage"]["output_tokens"]
        self.done = True


class MessagesExchange(OpenAIExchange):
    """Sink of one Anthropic Messages response: `text_delta` blocks are the content; `message_delta` carries the
    output tokens and `message_stop` ends it."""

    def on_event(self, event: str, data: bytes, now: float) -> None:
        """One named SSE event."""
        if self.status != 200 or event == "error":
            self.error = f"HTTP {self.status} event {event}: {data[:300]!r}"
        elif event == "content_block_delta":
            if b'"text_delta"' in data:
                self.clock.content(now)
        elif event == "message_delta":
            self.clock.usage_tokens = orjson.loads(data)["usage"]["output_tokens"]
        elif event == "message_stop":
            self.done = True

    def on_body(self, body: bytes, now: float) -> None:
        """A non-streamed response."""
        if self.status != 200:
            self.error = f"HTTP {self.status}: {body[:300]!r}"
            return
        obj = orjson.loads(body)
        self.text = "".join(block.get("text", "") for block in obj["content"] if block["type"] == "text")
        self.clock.usage_tokens = obj["usage"]["output_tokens"]
        self.done = True


EXCHANGES: dict[str, type[OpenAIExchange]] = {
    "chat": OpenAIExchange,
    "responses": ResponsesExchange,
    "messages": MessagesExchange,
}


async def openai_stream(
    target: HttpTarget,
    requests: list[bytes],
    first: int,
    step: int,
    stats: WindowStats,
    *,
    protocol: str,
    stream: bool,
    count: int,
) -> None:
    """Send requests back to back on one keep-alive connection: `count` of them, or until the window ends.
    `protocol`: chat (completions), responses or messages: how the answer is read."""
    exchange_type = EXCHANGES[protocol]
    conn: HttpConnection | None = None
    sent = 0
    while (sent < count) if count else (time.monotonic() < stats.end):
        request = requests[(first + sent * step) % len(requests)]
        sent += 1
        try:
            if conn is None or conn.closed:
                conn = await HttpConnection.open(target)
        except OSError as exc:
            stats.error(f"connect: {exc!r}", time.monotonic())
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        clock = RequestClock(stats, time.monotonic())
        exchange = exchange_type(clock)
        try:
            reusable = await conn.exchange(request, exchange)
        except (OSError, ResponseError) as exc:
            clock.fail(repr(exc), time.monotonic())
            conn.close()
            conn = None
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        except asyncio.CancelledError:
            clock.abandon()
            conn.close()
            raise
        now = time.monotonic()
        failure = exchange.error or ("" if exchange.done else "response ended without [DONE]")
        if not failure and stream and not clock.chunks:
            failure = "stream carried no content"
        if failure:
            clock.fail(failure, now)
        else:
            clock.finish(now, streamed=stream, text=exchange.text)
        if not reusable:
            conn.close()
            conn = None
        if failure:
            await asyncio.sleep(RETRY_PAUSE_S)
    if conn is not None:
        conn.close()


def _response_tokens(response: Any) -> int:
    """Token count of a non-streamed Triton response (num_output_tokens or sequence_length), 0 if absent."""
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
        if output.name in ("num_output_tokens", "sequence_length") and raw:
            return int.from_bytes(raw[:4], "little", signed=True)
    return 0


async def triton_stream(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    templates: list[service_pb2.ModelInferRequest],
    first: int,
    step: int,
    stats: WindowStats,
    *,
    stream: bool,
    count: int,
    tag: str,
    inflight: set[str],
) -> None:
    """Direct client: one ModelStreamInfer call per request; a response's tokens are its count output
    (`sequence_length` or `num_output_tokens`), else one per response with outputs.

    Ids of unfinished requests stay in `inflight` when the loop is cancelled, for `stop_requests`.
    """
    sent = 0
    while (sent < count) if count else (time.monotonic() < stats.end):
        message = service_pb2.ModelInferRequest()
        message.CopyFrom(templates[(first + sent * step) % len(templates)])
        message.id = f"{tag}-{first}-{sent}"
        sent += 1
        inflight.add(message.id)
        clock = RequestClock(stats, time.monotonic())
        call = stub.ModelStreamInfer()
        try:
            await call.write(message)
            await call.done_writing()
            outcome = "the stream ended before the final response"
            tokens = 0
            async for reply in call:
                now = time.monotonic()
                if reply.error_message:
                    outcome = reply.error_message
                    break
                clock.open()
                response = reply.infer_response
                if response.raw_output_contents:
                    clock.content(now)
                    tokens = tokens + _response_tokens(response) if stream else _response_tokens(response)
                final = response.parameters.get(FINAL)
                if final is not None and final.bool_param:
                    outcome = ""
                    break
            now = time.monotonic()
            if outcome:
                clock.fail(outcome, now)
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                clock.usage_tokens = tokens
                clock.finish(now, streamed=stream)
            inflight.discard(message.id)
        except grpc.aio.AioRpcError as exc:
            inflight.discard(message.id)
            clock.fail(f"{exc.code().name}: {exc.details()}", time.monotonic())
            await asyncio.sleep(RETRY_PAUSE_S)
        except asyncio.CancelledError:
            call.cancel()
            clock.abandon()
            raise
        except Exception as exc:  # e.g. grpc's ExecuteBatchError when the call broke while writing
            inflight.discard(message.id)
            clock.fail(repr(exc), time.monotonic())
            await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            if not clock.done:
                call.cancel()


async def stop_requests(stub: service_pb2_grpc.GRPCInferenceServiceStub, request_ids: set[str]) -> int:
    """Send `stop=true` to `tensorrt_llm` for each id, as the gateway does: a cancelled ensemble call keeps
    generating otherwise. Returns how many were refused or failed."""
    import struct

    def stop_message(request_id: str) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name="tensorrt_llm", id=request_id)
        message.parameters["triton_enable_empty_final_response"].bool_param = True
        tensors = [
            ("input_ids", "INT32", [1, 1], struct.pack("<i", 0)),
            ("input_lengths", "INT32", [1, 1], struct.pack("<i", 0)),
            ("request_output_len", "INT32", [1, 1], struct.pack("<i", 0)),
            ("stop", "BOOL", [1, 1], struct.pack("<?", True)),
            ("streaming", "BOOL", [1, 1], struct.pack("<?", False)),
        ]
        for name, datatype, shape, raw in tensors:
            message.inputs.add(name=name, datatype=datatype, shape=shape)
            message.raw_input_contents.append(raw)
        message.outputs.add(name="output_ids")
        return message

    async def stop(request_id: str) -> bool:
        call = stub.ModelStreamInfer(timeout=10)
        try:
            await call.write(stop_message(request_id))
            await call.done_writing()
            async for reply in call:
                final = reply.infer_response.parameters.get(FINAL)
                if reply.error_message or (final is not None and final.bool_param):
                    return not reply.error_message
            return True
        except Exception:  # AioRpcError, or ExecuteBatchError when the call broke while writing
            return False
        finally:
            call.cancel()

    results = await asyncio.gather(*(stop(i) for i in request_ids))
    return results.count(False)
