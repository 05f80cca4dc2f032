"""Reads a gRPC response stream in a task of its own, so that a consumer that leaves does not cancel the RPC.

grpc.aio cancels an RPC when the coroutine awaiting one of its reads is cancelled, and Triton 24.x to 25.01
can crash when many streaming requests are cancelled (triton-inference-server/server #7368, #8034; seen here
with the ensemble under a hundred cut streams). For the ensemble and BLS, whose engine a cancel does not stop
anyway, the gateway therefore stops the generation with a `stop=true` request and lets the stream end by
itself: this reader keeps draining it, and cancels it only if it has not ended within a grace period.

While the consumer reads, the queue between them is bounded: a slow client holds the reader back, so gRPC flow
control keeps the backlog in Triton, as it does for a call read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

_END = object()
# Responses read ahead of the consumer; more waits in gRPC's flow-control window and in Triton.
READ_AHEAD = 64


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class DetachedStream:
    """An async iterator over a call's responses, fed by a reader task that outlives the consumer."""

    def __init__(self, call: Any, background: set[asyncio.Task[None]]) -> None:
        self._call = call
        self._queue: asyncio.Queue[Any] = asyncio.Queue(READ_AHEAD)
        self._abandoned = False
        task = asyncio.get_running_loop().create_task(self._pump())
        background.add(task)
        task.add_done_callback(background.discard)

    async def _pump(self) -> None:
        try:
            async for response in self._call:
                await self._hand_over(response)
        except (Exception, asyncio.CancelledError) as exc:  # an RPC error or a cancel: the consumer gets it
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # this reader itself is cancelled (loop shutdown)
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(_Failure(exc))
                raise
            await self._hand_over(_Failure(exc))
        else:
            await self._hand_over(_END)

    async def _hand_over(self, item: Any) -> None:
        if not self._abandoned:
            await self._queue.put(item)  # waits while the consumer is READ_AHEAD behind

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
        while not self._queue.empty():  # also frees a reader waiting for room
            self._queue.get_nowait()
        asyncio.get_running_loop().call_later(grace_s, self._call.cancel)
