"""Server-sent events: the only place that knows the framing (`event:` and `data:` lines, `[DONE]`, comments).

Every protocol's stream goes through here. Its events (a list per write) come from the protocol's encoder: JSON
bytes for a data-only stream (chat, completions), or (event name, JSON bytes) pairs for a stream of named events
(Responses, Messages); a `StreamStyle` says which, whether `data: [DONE]` ends the stream, and whether the
keep-alive is a comment line or a named event (Messages' `ping`). After a failure the encoder gives the events
that report it (`Encoder.failure`).

The events are written from the request's own task, while a watcher listens for the disconnect (Starlette's
StreamingResponse does that only for ASGI < 2.4). A disconnect cancels the writing, which runs the `finally`
blocks of the event generators: they close the engine streams and stop the upstream.

Status and keep-alive: the response headers wait for the first chunk, so a refusal that arrives before any
output (Triton rejecting a value, the upstream down) still gets its own status code and JSON body (in the route's
error shape). The wait lasts at most `keepalive_s` (15 s by default): then the gateway commits to 200 and sends
a keep-alive, and keeps sending one whenever the stream has been silent that long, so proxies with 60 s read
timeouts do not cut long prompts under load. A failure after that point is reported by the encoder's events
(chat: `event: error`, then `[DONE]`).

A client that stops reading is not the upstream's fault: a write that does not complete within
`write_timeout_s` ends the response (`ClientWriteTimeoutError`), which stops the upstream too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.api.disconnect import left_on_disconnect
from gateway.api.errors import ErrorShape, note_error
from gateway.core.generation import NamedEvent
from gateway.errors import ClientDisconnectedError, ClientWriteTimeoutError, GatewayError

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
JSON_HEADERS = [(b"content-type", b"application/json")]


def frame(chunks: list[bytes]) -> bytes:
    """`data:` events for JSON chunks, as one write."""
    if len(chunks) == 1:
        return b"data: " + chunks[0] + b"\n\n"
    return b"".join(b"data: " + chunk + b"\n\n" for chunk in chunks)


def frame_named(events: list[NamedEvent]) -> bytes:
    """`event:` + `data:` events for (name, JSON) pairs, as one write."""
    if len(events) == 1:  # one token per write is the common case: no generator for it
        name, data = events[0]
        return b"event: " + name + b"\ndata: " + data + b"\n\n"
    return b"".join(b"event: " + name + b"\ndata: " + data + b"\n\n" for name, data in events)


@dataclass(frozen=True, slots=True)
class StreamStyle:
    """A protocol's stream: named events or data-only, `data: [DONE]` at the end, and its keep-alive (a named
    event such as Messages' `ping`, or else a comment line)."""

    named: bool = False
    done: bool = False
    ping: NamedEvent | None = None


OPENAI_STREAM = StreamStyle(named=False, done=True)  # chat and completions


class Framing:
    """One response's framing: its protocol's style, how its encoder reports a failure, its route's error shape."""

    __slots__ = ("_errors", "_failure", "done", "frame", "keepalive")

    def __init__(
        self, style: StreamStyle, failure: Callable[[GatewayError, bytes], list[NamedEvent]], errors: ErrorShape
    ) -> None:
        self.frame: Callable[[list[Any]], bytes] = frame_named if style.named else frame
        self.done = DONE if style.done else b""
        self.keepalive = frame_named([style.ping]) if style.ping is not None else KEEPALIVE
        self._failure = failure
        self._errors = errors

    def failure(self, error: GatewayError) -> bytes:
        """The events that report an error after streaming started, and the end of the stream."""
        return frame_named(self._failure(error, self._errors.body(error))) + self.done

    def refusal(self, error: GatewayError) -> tuple[int, bytes]:
        """The status and body of an error before any byte was sent."""
        return self._errors.status(error), self._errors.body(error)


class _Writer:
    """Writes one response's messages; a lazily re-armed timer sends keep-alives and watches slow writes."""

    def __init__(
        self, send: Send, raw_headers: list[tuple[bytes, bytes]], framing: Framing, keepalive_s: float, write_s: float
    ) -> None:
        self._send = send
        self._headers = raw_headers
        self._framing = framing
        self._keepalive_s = keepalive_s
        self._write_s = write_s
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._last = self._loop.time()
        self._writing_since: float | None = None
        self._ping: asyncio.Task[None] | None = None
        self.started = False
        self.timed_out = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self._last + keepalive_s, self._tick)

    async def write(self, body: bytes, more_body: bool = True) -> None:
        """Send body bytes (the 200 headers first, on the first write); `more_body=False` ends the body with them,
        in one message (one write of the server's)."""
        if self._ping is not None:
            await self._ping  # rare: a keep-alive is being written right now
        if not self.started:
            self.started = True
            await self._send_timed({"type": "http.response.start", "status": 200, "headers": self._headers})
        await self._send_timed({"type": "http.response.body", "body": body, "more_body": more_body})

    async def refuse(self, error: GatewayError) -> None:
        """Before any byte was sent: answer with the error's own status and JSON body."""
        if self._ping is not None:
            await self._ping
        if self.started:  # a keep-alive committed to 200 meanwhile
            await self.write(self._framing.failure(error), more_body=False)
            return
        self.started = True
        status, body = self._framing.refusal(error)
        await self._send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    def close(self) -> None:
        """Stop the timer and any keep-alive in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ping is not None:
            self._ping.cancel()

    async def _send_timed(self, message: dict[str, object]) -> None:
        self._writing_since = self._loop.time()
        await self._send(message)
        self._last = self._loop.time()
        self._writing_since = None

    def _tick(self) -> None:
        now = self._loop.time()
        due = self._last + self._keepalive_s
        if self._writing_since is not None:
            if now - self._writing_since >= self._write_s:
                self.timed_out = True
                self._timer = None
                self._task.cancel()
                return
            due = min(due, self._writing_since + self._write_s)
        elif self._ping is None and now >= due:
            self._ping = self._loop.create_task(self._keepalive())
            due = now + self._keepalive_s
        self._timer = self._loop.call_at(max(due, now + 0.001), self._tick)

    async def _keepalive(self) -> None:
        try:
            if not self.started:
                self.started = True
                await self._send_timed({"type": "http.response.start", "status": 200, "headers": self._headers})
            await self._send_timed({"type": "http.response.body", "body": self._framing.keepalive, "more_body": True})
        except OSError:
            pass  # the client went away; the disconnect watcher ends the request
        finally:
            self._ping = None


class SSEResponse(StreamingResponse):
    """A text/event-stream response that stops producing as soon as the client disconnects or stops reading."""

    def __init__(
        self,
        chunks: AsyncGenerator[list[Any], None],
        framing: Framing,
        keepalive_s: float,
        write_timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        # The body is written by __call__ below, not by StreamingResponse (which only provides the headers).
        super().__init__(
            iter(()), media_type="text/event-stream", headers=SSE_HEADERS | headers if headers else SSE_HEADERS
        )
        self._chunks = chunks
        self._framing = framing
        self._keepalive_s = keepalive_s
        self._write_timeout_s = write_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = _Writer(send, self.raw_headers, self._framing, self._keepalive_s, self._write_timeout_s)
        try:
            async with left_on_disconnect(receive):
                await self._write_events(writer)
        except (ClientDisconnectedError, OSError):  # OSError: the client went away while we were writing
            pass
        except asyncio.CancelledError:
            if not writer.timed_out:
                raise
            self._uncancel()
            logger.warning("client stopped reading the stream for %g s: response ended", self._write_timeout_s)
            note_error(ClientWriteTimeoutError(f"no write completed within {self._write_timeout_s:g} s"))
        finally:
            writer.close()
            await self._chunks.aclose()

    async def _write_events(self, writer: _Writer) -> None:
        frame_events = self._framing.frame
        try:
            async for chunks in self._chunks:
                await writer.write(frame_events(chunks))
        except GatewayError as exc:
            logger.warning("stream failed: %s", exc.message)
            note_error(exc)
            await self._report(writer, exc)
            return
        except Exception as exc:
            logger.exception("stream failed unexpectedly")
            note_error(exc)
            await self._report(writer, GatewayError("The server had an error while processing your request."))
            return
        await writer.write(self._framing.done, more_body=False)

    async def _report(self, writer: _Writer, error: GatewayError) -> None:
        if writer.started:
            await writer.write(self._framing.failure(error), more_body=False)
        else:
            await writer.refuse(error)

    @staticmethod
    def _uncancel() -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
