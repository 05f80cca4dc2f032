"""Sending an error straight from ASGI middleware (before the app is called), in the route's error shape."""

from __future__ import annotations

from starlette.types import Scope, Send

from gateway.api.errors import error_shape_of
from gateway.errors import GatewayError


async def send_error(scope: Scope, send: Send, error: GatewayError, headers: dict[str, str] | None = None) -> None:
    """A complete JSON error response."""
    shape = error_shape_of(scope)
    body = shape.body(error)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": shape.status(error), "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
