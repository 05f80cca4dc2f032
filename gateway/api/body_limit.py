"""Refuse request bodies over a size limit with a 413, before they are buffered."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.errors import PayloadTooLargeError


class BodySizeLimitMiddleware:
    """413 when Content-Length (or the bytes actually received) exceed `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"The request body is larger than the limit of {self.max_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(scope, send, self._error())
            return
        received = 0
        limit_error = self._error

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException survives FastAPI's body parsing (other errors become a 400 there).
                    raise HTTPException(413, limit_error().message)
            return message

        await self.app(scope, counting_receive, send)
