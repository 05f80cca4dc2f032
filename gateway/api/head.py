"""HEAD answered as GET without the body (RFC 9110 §9.3.2), for every route.

FastAPI routes answer only the methods they declare, so `HEAD /metrics` or `HEAD /health/ready` would be a 405;
monitoring tools and load balancers try HEAD first. Starlette's plain routes add HEAD to GET the same way. A HEAD
on a route without GET gets that route's own answer (405 for the POST endpoints), without its body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_EMPTY_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class HeadAsGetMiddleware:
    """Runs a HEAD request as GET and sends the status and headers only (Content-Length stays GET's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass everything but HEAD through untouched."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send(_EMPTY_END)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
