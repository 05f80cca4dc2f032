"""Await a request's work, abandoning it (and so the upstream generation) if the client leaves meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from gateway.errors import ClientDisconnectedError

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in this task; if the client disconnects first, cancel it and raise ClientDisconnectedError."""
    task = asyncio.current_task()
    assert task is not None
    state = {"working": True, "disconnected": False}

    async def watch_for_disconnect() -> None:
        # The body has been read already, so the next ASGI message can only be the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        state["disconnected"] = True
        if state["working"]:
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch_for_disconnect())
    try:
        return await work
    except asyncio.CancelledError:
        if not state["disconnected"]:
            raise
        task.uncancel()
        raise ClientDisconnectedError("the client closed the connection before the response was ready") from None
    finally:
        state["working"] = False
        watcher.cancel()
