"""Sending an OpenAI error straight from ASGI middleware (before the app is called)."""

from __future__ import annotations

import orjson
from starlette.types import Send

from gateway.errors import GatewayError


async def send_error(send: Send, error: GatewayError, headers: dict[str, str] | None = None) -> None:
    """A complete JSON error response."""
    body = orjson.dumps(error.to_body())
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
