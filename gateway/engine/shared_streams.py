"""Triton requests over a few long-lived `ModelStreamInfer` streams, each request's responses found by its id.

A gRPC call per request costs the client the call's set-up every time, and grpc core keeps ~24 KB for each call
while it is open (`python -m bench.grpc_call_cost`: 347 against 211 µs of client CPU per request, 30.2 against
6.5 KB per held request, 2-core VM). A stream that stays open carries requests for the price of a write: Triton's
stream handler answers each request on the stream it came on, puts the request's id on every response (errors
included) and, since the engine asks for it on every request, ends each with a `triton_final_response` response.

A `SharedCall` hands its request's responses, up to the final one (or an error response), to the request's
DetachedStream as the stream's reader task reads them: no task per request reads it. A deadline ends it with
DEADLINE_EXCEEDED, as a call's would. `cancel()` only stops the delivery: the request goes on upstream until a
stop request ends it, so the engine stops every abandoned shared request that way, direct mode included.

A stream that fails, or that the server ends, ends every request on it the same way their own calls would have
ended (the pool retries elsewhere those that had no response yet); the next request opens a new stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import grpc

from gateway.engine.tensors import FINAL_RESPONSE_PARAMETER


def _deadline_error() -> grpc.aio.AioRpcError:
    metadata = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, metadata, metadata, "Deadline Exceeded")


class SharedCall:
    """One request on a shared stream. Its reader attaches once (`attach`, before the loop runs again) and is then
    handed each response, and at the end None or the error the call ended with; no task of its own reads it."""

    __slots__ = (
        "_deadline",
        "_ended",
        "_error",
        "_items",
        "_on_end",
        "_on_response",
        "_stream",
        "answered",
        "request_id",
    )

    def __init__(self, stream: _Stream, request_id: str, timeout: float | None) -> None:
        self._stream = stream
        self.request_id = request_id
        self._on_response: Callable[[Any], None] | None = None
        self._on_end: Callable[[BaseException | None], None] | None = None
        self._items: list[Any] = []  # what came before the reader attached
        self._ended = False  # nothing more will be delivered: the final response, a failure or a cancel
        self._error: BaseException | None = None
        self.answered = False  # its final response (or an error response) came: nothing of it runs upstream
        self._deadline = stream.loop.call_later(timeout, self._expire) if timeout is not None else None

    @property
    def ended(self) -> bool:
        """Whether nothing more will be delivered."""
        return self._ended

    def attach(self, on_response: Callable[[Any], None], on_end: Callable[[BaseException | None], None]) -> None:
        """Hand the responses to `on_response` from now on (those that came before at once), then the end."""
        self._on_response, self._on_end = on_response, on_end
        for response in self._items:
            on_response(response)
        self._items = []
        if self._ended:
            on_end(self._error)

    def deliver(self, response: Any, infer: Any) -> None:
        """A response for this request (`infer` is its `infer_response`)."""
        if self._ended:
            return
        if self._on_response is not None:
            self._on_response(response)
        else:
            self._items.append(response)
        final = infer.parameters.get(FINAL_RESPONSE_PARAMETER)
        if response.error_message or (final is not None and final.bool_param):
            self.answered = True
            self.end(None)

    def end(self, error: BaseException | None) -> None:
        """No more responses: the reader is told `error` (None: the end) after those already delivered."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._stream.forget(self.request_id)
        if self._on_end is not None:
            self._on_end(error)

    def cancel(self) -> bool:
        """Stop the delivery (the request itself goes on upstream until it is stopped)."""
        if self._ended:
            return False
        self._items.clear()
        self.end(asyncio.CancelledError())
        return True

    def _expire(self) -> None:
        self._deadline = None
        self._items.clear()
        self.end(_deadline_error())


class _Stream:
    """One long-lived call: a writer task sends the requests in order, a reader task hands out the responses."""

    def __init__(self, open_call: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.broken = False  # failed or ended: takes no more requests
        self._call = open_call()
        self._calls: dict[str, SharedCall] = {}
        self._writes: list[tuple[bytes, SharedCall]] = []
        self._written: asyncio.Future[None] | None = None  # the writer waits on it while there is nothing to write
        self._tasks = (loop.create_task(self._write_all()), loop.create_task(self._read_all()))

    def holds(self, request_id: str) -> bool:
        """Whether a request with this id is open on this stream."""
        return request_id in self._calls

    def submit(self, request_id: str, payload: bytes, timeout: float | None) -> SharedCall:
        """Queue the serialized request for writing; its call, registered under its id."""
        call = self._calls[request_id] = SharedCall(self, request_id, timeout)
        self._writes.append((payload, call))
        written = self._written
        if written is not None and not written.done():
            written.set_result(None)
        return call

    def forget(self, request_id: str) -> None:
        """The request's call has ended: responses for its id are dropped from now on."""
        self._calls.pop(request_id, None)

    async def _write_all(self) -> None:
        try:
            while True:
                while not self._writes:
                    self._written = self.loop.create_future()
                    await self._written
                payload, call = self._writes.pop(0)
                if not call.ended:  # not cancelled or timed out before its turn: never sent
                    await self._call.write(payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream is broken; the reader reports how, unless it is still reading
            self._fail(exc)

    async def _read_all(self) -> None:
        error: BaseException | None = None
        calls = self._calls
        try:
            async for response in self._call:
                infer = response.infer_response
                call = calls.get(infer.id)
                if call is not None:
                    call.deliver(response, infer)
        except asyncio.CancelledError:
            error = asyncio.CancelledError()
        except Exception as exc:  # an RPC error: every request on the stream gets it
            error = exc
        self._fail(error)

    def _fail(self, error: BaseException | None) -> None:
        """End every request on the stream with `error` (None: the server ended the stream), and the stream."""
        self.broken = True
        for call in list(self._calls.values()):
            call.end(error)
        self._writes.clear()
        self._call.cancel()
        running = asyncio.current_task()
        for task in self._tasks:
            if task is not running:
                task.cancel()  # the writer would wait for ever on a stream that takes no more requests

    def close(self) -> None:
        """Stop both tasks and the call."""
        self._fail(asyncio.CancelledError())


class SharedStreams:
    """`count` long-lived ModelStreamInfer calls, opened on first use (and again after one fails), taken in turn."""

    def __init__(self, open_call: Callable[[], Any], count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self._open = open_call
        self._streams: list[_Stream | None] = [None] * count
        self._turn = itertools.cycle(range(count))

    def holds(self, request_id: str) -> bool:
        """Whether a request with this id is open on one of the streams (a second one must use a call of its own)."""
        return any(stream is not None and stream.holds(request_id) for stream in self._streams)

    def call(self, request_id: str, payload: bytes, timeout: float | None) -> SharedCall:
        """Send the serialized request on the next stream; its call."""
        index = next(self._turn)
        stream = self._streams[index]
        if stream is None or stream.broken:
            stream = self._streams[index] = _Stream(self._open, asyncio.get_running_loop())
        return stream.submit(request_id, payload, timeout)

    def close(self) -> None:
        """End every stream (and every request still on one)."""
        for stream in self._streams:
            if stream is not None:
                stream.close()
        self._streams = [None] * len(self._streams)
