"""Work in the request's task that is abandoned (and so stops the upstream generation) if the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from gateway.errors import ClientDisconnectedError

T = TypeVar("T")


@asynccontextmanager
async def left_on_disconnect(receive: Receive) -> AsyncIterator[None]:
    """Run the block in this task; if the client disconnects meanwhile, cancel it and raise ClientDisconnectedError.

    One watcher task reads the ASGI messages (the body has been read already, so the next one can only be the
    disconnect); cancelling the block runs the `finally` blocks of the engine streams it was reading.
    """
    task = asyncio.current_task()
    assert task is not None
    state = {"active": True, "disconnected": False}

    async def watch_for_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        state["disconnected"] = True
        if state["active"]:
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch_for_disconnect())
    try:
        yield
    except asyncio.CancelledError:
        if not state["disconnected"]:
            raise
        task.uncancel()
        raise ClientDisconnectedError("the client closed the connection before the response was complete") from None
    finally:
        state["active"] = False
        watcher.cancel()


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` in this task; if the client disconnects first, cancel it and raise ClientDisconnectedError."""
    async with left_on_disconnect(request.receive):
        return await work
