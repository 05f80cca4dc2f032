"""Driving the app at the ASGI level, as uvicorn does: a body sent in pieces, a client that stalls or leaves.

httpx's ASGITransport sends the whole body at once and cannot disconnect, so the hardening tests use this.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp


@dataclass
class ScriptedClient:
    """Sends `pieces` of a body (the last one ends it unless `stall` is set: then it never sends the rest),
    then waits; `leave` (set at any time) makes the next receive a disconnect, as uvicorn reports it."""

    pieces: list[bytes]
    stall: bool = False
    leave: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        if self.pieces and not self.leave.is_set():
            piece = self.pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(self.pieces) or self.stall}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def post_scope(path: str, length: int | None) -> dict[str, Any]:
    """The scope of a JSON POST (with a Content-Length when `length` is given, else chunked)."""
    headers = [(b"content-type", b"application/json")]
    sized = length is not None
    headers.append((b"content-length", str(length).encode()) if sized else (b"transfer-encoding", b"chunked"))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("gateway", 80),
    }  # fmt: skip


def start(
    app: ASGIApp, path: str, body: dict[str, Any], split: int | None = None, stall: bool = False
) -> tuple[ScriptedClient, asyncio.Task[None]]:
    """Run one request in a task: the JSON `body`, sent in two pieces at `split` (or whole)."""
    raw = json.dumps(body).encode()
    pieces = [raw[:split], raw[split:]] if split is not None else [raw]
    client = ScriptedClient(pieces[:1] if stall else pieces, stall=stall)
    task = asyncio.create_task(app(post_scope(path, len(raw)), client.receive, client.send))
    return client, task
