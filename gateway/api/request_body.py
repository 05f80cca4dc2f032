"""Reading a request's whole body before the app sees it: 413 over the size limit, 408 when it is not complete
within the body timeout, nothing at all when the client leaves meanwhile (recorded as 499).

This runs before admission (api/admission.py): a client that sends its body slowly, or never finishes it, holds
no admission slot and is not counted in the saturation gauge; the app gets the buffered body. Only requests that
announce a body (Content-Length or Transfer-Encoding) are read; the rest pass straight through.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.errors import PayloadTooLargeError, RequestTimeoutError

CLOSE = {"Connection": "close"}


def replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands out an already read request body first."""
    return replaying_messages([{"type": "http.request", "body": body, "more_body": False}], receive)


def replaying_messages(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that hands out `messages` first (in order), then the server's own."""
    pending = messages[::-1]  # popped from the end, so that nothing is kept once handed out

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def announced_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's Content-Length (-1 for a chunked or otherwise unsized body), or None when there is no body."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            return -1
    return length or None


def too_large(max_bytes: int) -> PayloadTooLargeError:
    """The 413 for a body over `max_bytes`."""
    return PayloadTooLargeError(f"The request body is larger than the limit of {max_bytes} bytes.")


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole body, or None when the client disconnected first; PayloadTooLargeError past `max_bytes`."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        if not message.get("more_body", False):
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)


class RequestBodyMiddleware:
    """Buffers every request body (see the module doc) within `max_bytes` and `timeout_s`."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read one request's body, then hand it to the app."""
        length = announced_length(scope["headers"]) if scope["type"] == "http" else None
        if length is None:
            await self.app(scope, receive, send)
            return
        if length > self.max_bytes:
            await send_error(scope, send, too_large(self.max_bytes))
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await read_body(receive, self.max_bytes)
        except PayloadTooLargeError as exc:
            await send_error(scope, send, exc)
            return
        except TimeoutError:
            error = RequestTimeoutError(f"The request body was not received within {self.timeout_s:g} s.")
            await send_error(scope, send, error, CLOSE)
            return
        if body is None:
            return  # the client left: nobody to answer (the telemetry saw the disconnect: a 499)
        receive = replaying(body, receive)
        del body  # handed out once by `receive`: a stream does not keep the request's body while it runs
        await self.app(scope, receive, send)
