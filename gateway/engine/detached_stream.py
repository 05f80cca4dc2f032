"""Reads a gRPC response stream in a task of its own, so that a consumer that leaves does not cancel the RPC.

grpc.aio cancels an RPC when the coroutine awaiting one of its reads is cancelled, and Triton 24.x to 25.01
can crash when many streaming requests are cancelled (triton-inference-server/server #7368, #8034; seen here
with the ensemble under a hundred cut streams). For the ensemble and BLS, whose engine a cancel does not stop
anyway, the gateway therefore stops the generation with a `stop=true` request and lets the stream end by
itself: this reader keeps draining it, and cancels it only if it has not ended within a grace period.
"""

from __future__ import annotations

import asyncio
from typing import Any

_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class DetachedStream:
    """An async iterator over a call's responses, fed by a reader task that outlives the consumer."""

    def __init__(self, call: Any, background: set[asyncio.Task[None]]) -> None:
        self._call = call
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._abandoned = False
        task = asyncio.get_running_loop().create_task(self._pump())
        background.add(task)
        task.add_done_callback(background.discard)

    async def _pump(self) -> None:
        try:
            async for response in self._call:
                if not self._abandoned:
                    self._queue.put_nowait(response)
        except BaseException as exc:  # an RPC error or a cancel: the consumer gets it where it reads
            self._queue.put_nowait(_Failure(exc))
        else:
            self._queue.put_nowait(_END)

    def __aiter__(self) -> DetachedStream:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            raise item.error
        return item

    def abandon(self, grace_s: float) -> None:
        """The consumer has left: drop what still arrives, and cancel the call if it is not over in `grace_s`."""
        self._abandoned = True
        asyncio.get_running_loop().call_later(grace_s, self._call.cancel)
