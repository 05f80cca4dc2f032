"""Stop requests for abandoned ensemble and BLS generations: a few at a time, sent again while the call is open.

A `stop=true` request reaches only a generation that `tensorrt_llm` already holds: TensorRT-LLM's backend
cancels the executor requests it has under that Triton request id and forgets the stop, so a request that was
still in preprocessing, in the ensemble scheduler or in Triton's queue in front of `tensorrt_llm` runs to its
end once it gets there (docs/architecture.md, "Ending a generation"). The abandoned call's end is the proof
that the generation stopped: while the call is still open after its stop was answered, the stop is sent again,
every 0.25 s for the first 2 s (a request that was still queued in front of the engine is caught within a
quarter of a second of reaching it), then at doubling intervals up to every 2 s, until the call ends (or is
cancelled at its deadline).

At most `concurrency` stop requests are in flight at once, in the order they were asked for, all on the
engine's one channel: a storm of hang-ups does not become a storm of stop requests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

RETRY_S = 0.25
FAST_RETRIES = 8  # every RETRY_S for the first 2 s; then doubling intervals
MAX_RETRY_S = 2.0
CONCURRENCY = 64


class OpenCall(Protocol):
    """The abandoned call: stops are repeated until it has ended."""

    @property
    def ended(self) -> bool:
        """Whether the call is over (the upstream sent its final response, failed, or was cancelled)."""


class _Pending:
    __slots__ = ("call", "delay", "request_id", "retries")

    def __init__(self, request_id: str, call: OpenCall) -> None:
        self.request_id = request_id
        self.call = call
        self.delay = RETRY_S
        self.retries = 0


class StopRequests:
    """Sends `send(request_id)` for each abandoned call until the call has ended."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        background: set[asyncio.Task[None]],
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._send = send
        self._background = background
        self._concurrency = concurrency
        self._queue: deque[_Pending] = deque()
        self._senders = 0
        self._closed = False
        self.sent = 0  # stop requests sent so far (tests and logs)

    def stop(self, request_id: str, call: OpenCall) -> None:
        """Stop the generation behind `call` (request id `request_id`), again and again until the call ends."""
        self._queue.append(_Pending(request_id, call))
        self._start_senders()

    def close(self) -> None:
        """Send nothing more (the channel is closing)."""
        self._closed = True
        self._queue.clear()

    def _start_senders(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._senders < self._concurrency and not self._closed:
            self._senders += 1
            task = loop.create_task(self._send_queued())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                pending = self._queue.popleft()
                if pending.call.ended:
                    continue
                self.sent += 1
                await self._send(pending.request_id)
                if not pending.call.ended:
                    loop.call_later(pending.delay, self._again, pending)
        finally:
            self._senders -= 1

    def _again(self, pending: _Pending) -> None:
        if pending.call.ended or self._closed:
            return
        pending.retries += 1
        if pending.retries >= FAST_RETRIES:
            pending.delay = min(pending.delay * 2, MAX_RETRY_S)
        self._queue.append(pending)
        self._start_senders()
