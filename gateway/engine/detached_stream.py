"""Reads a gRPC response stream in a task of its own, so that a consumer that leaves does not cancel the RPC.

A request on a shared stream (engine/shared_streams.py) needs no task of its own: the stream's reader hands its
responses in (`SharedCall.attach`), with no read-ahead limit, since a stream's flow control is for all its requests.

grpc.aio cancels an RPC when the coroutine awaiting one of its reads is cancelled, and Triton 24.x to 25.01
can crash when many streaming requests are cancelled (triton-inference-server/server #7368, #8034; seen here
with the ensemble under a hundred cut streams). For the ensemble and BLS, whose engine a cancel does not stop
anyway, the gateway therefore stops the generation with a `stop=true` request and lets the stream end by
itself: this reader keeps draining it, and cancels it only if it has not ended within a grace period.

The consumer takes every response that has arrived since its last read at once (a batch), so a consumer that
falls behind catches up with one write instead of one per token. While it reads, the reader stays at most
READ_AHEAD responses ahead: a slow client holds the reader back, so gRPC flow control keeps the backlog in
Triton, as it does for a call read directly.

With `wake_every` N > 1 (`--stream-interval`), the consumer is woken for the first response at once, then once N
responses wait (or the call is over): a client gets an event per N tokens, and the gateway does its per-event work
(decoding, encoding, one write) once per N, as vLLM's and TensorRT-LLM's stream interval do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from gateway.engine.shared_streams import SharedCall

_END = object()
# Responses read ahead of the consumer; more waits in gRPC's flow-control window and in Triton.
READ_AHEAD = 64


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ArrivalWatcher(Protocol):
    """Told when responses arrive and when the reader waits for the consumer (engine/call_guard.py)."""

    def touch(self) -> None:
        """A response arrived."""

    def pause(self) -> None:
        """The reader waits for the consumer."""

    def resume(self) -> None:
        """The reader reads again."""


class DetachedStream:
    """An async iterator over batches of a call's responses, fed by a reader task that outlives the consumer."""

    def __init__(
        self,
        call: Any,
        background: set[asyncio.Task[None]],
        watcher: ArrivalWatcher | None = None,
        on_end: Callable[[], None] | None = None,
        wake_every: int = 1,
    ) -> None:
        """Start reading `call`; `on_end` is called once the call is over (ended, failed or cancelled). After the
        first response, the consumer gets batches of at least `wake_every` responses (fewer only at the end)."""
        if not 1 <= wake_every <= READ_AHEAD:
            raise ValueError(f"wake_every must be 1 to {READ_AHEAD}, not {wake_every}")
        self._call = call
        self._watcher = watcher
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._items: list[Any] = []  # a list, swapped out whole for each batch
        self._arrived: asyncio.Future[None] | None = None  # the consumer waits on it while there is nothing
        self._room: asyncio.Future[None] | None = None  # the reader waits on it while READ_AHEAD are unread
        self._wake_every = wake_every
        self._wake_at = 1  # responses the consumer waits for: 1 for the first batch, then wake_every
        self._last_in = False  # the end (or a failure) is queued: the consumer takes what is left at once
        self._abandoned = False
        self._deadline: asyncio.TimerHandle | None = None
        self.ended = False  # the call is over
        self.broken = False  # ...without the upstream ending it (cancelled, deadline, transport error)
        self._background = background
        if isinstance(call, SharedCall):  # a request on a shared stream: its stream's reader hands responses here
            call.attach(self._pushed, self._pushed_end)
            return
        task = self._loop.create_task(self._pump())
        background.add(task)
        task.add_done_callback(self._done)

    def _pushed(self, response: Any) -> None:
        if self._watcher is not None:
            self._watcher.touch()
        self._put(response)  # no read-ahead limit: flow control is the shared stream's, for all its requests

    def _pushed_end(self, error: BaseException | None) -> None:
        if error is None:
            self._put_last(_END)
        else:
            self.broken = True
            self._put_last(_Failure(error))
        self._over()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        self._over()

    def _over(self) -> None:
        self.ended = True
        if self._deadline is not None:
            self._deadline.cancel()  # let go of the call now, not at its deadline
        if self._on_end is not None:
            self._on_end()

    async def _pump(self) -> None:
        try:
            watcher = self._watcher
            async for response in self._call:
                if watcher is not None:
                    watcher.touch()
                self._put(response)
                if len(self._items) >= READ_AHEAD:
                    self._room = self._loop.create_future()
                    if watcher is not None:
                        watcher.pause()
                    await self._room
                    if watcher is not None:
                        watcher.resume()
        except (Exception, asyncio.CancelledError) as exc:  # an RPC error or a cancel: the consumer gets it
            self.broken = True
            self._put_last(_Failure(exc))
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # this reader itself is cancelled (loop shutdown)
                raise
        else:
            self._put_last(_END)

    def _put(self, item: Any) -> None:
        if self._abandoned:
            return
        self._items.append(item)
        arrived = self._arrived
        if arrived is not None and not arrived.done() and len(self._items) >= self._wake_at:
            arrived.set_result(None)

    def _put_last(self, item: Any) -> None:
        self._last_in = True
        self._wake_at = 1
        self._put(item)

    def _make_room(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def __aiter__(self) -> DetachedStream:
        return self

    async def __anext__(self) -> list[Any]:
        """Every response that has arrived and not been taken yet: at least one, then at least `wake_every` until
        the call is over."""
        while len(self._items) < self._wake_at:
            self._arrived = self._loop.create_future()
            await self._arrived
        if not self._last_in:
            self._wake_at = self._wake_every
        items = self._items
        last = items[-1]  # the end or a failure only ever comes last, and stays until all before it are taken
        ending = last is _END or isinstance(last, _Failure)
        if not ending or len(items) > 1:
            self._items = [last] if ending else []
            self._make_room()
            return items[:-1] if ending else items
        if last is _END:
            raise StopAsyncIteration
        raise last.error

    def abandon(self, grace_s: float) -> None:
        """The consumer has left: drop what still arrives, and cancel the call if it is not over in `grace_s`."""
        self._abandoned = True
        self._items.clear()
        self._make_room()
        if grace_s <= 0:
            self._call.cancel()
        elif not self.ended:
            self._deadline = self._loop.call_later(grace_s, self._call.cancel)
