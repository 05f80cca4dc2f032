"""At most N calls open at one upstream Triton; further requests wait here, in the gateway, in arrival order.

A request abandoned while it waits here costs nothing. One that has been sent may sit in Triton's queues
(preprocessing, the ensemble scheduler, the queue in front of `tensorrt_llm`), where neither a stop request nor
a safe cancel reaches it (docs/architecture.md, "Ending a generation"): in a storm of hang-ups, the fewer such
requests, the sooner Triton is idle again. A slot is held until the call has ended upstream, not until the
client leaves, so abandoned calls that are still being stopped count against the limit.

By default N follows the engine: twice the `max_batch_size` that Triton declares for the engine model (what it
runs at once, and as many again queued so that a finished sequence is replaced at once), shared by the
gateway's workers; a fixed 128 where Triton does not say.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from gateway.telemetry.upstream_metrics import SlotMetrics

FALLBACK_LIMIT = 128  # calls open at once when the engine's batch size is not known
CALLS_PER_BATCH_SLOT = 2


def limit_for_batch(max_batch_size: int, workers: int) -> int:
    """This worker's share of twice the engine's batch size (at least one call)."""
    return max(1, math.ceil(CALLS_PER_BATCH_SLOT * max_batch_size / workers))


class UpstreamSlots:
    """A FIFO counting semaphore whose `acquire` always lets other tasks run first."""

    def __init__(self, limit: int | None, metrics: SlotMetrics | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._metrics = metrics
        if metrics is not None:
            metrics.limit.set(limit or 0)

    async def acquire(self, timeout: float | None) -> None:
        """Take a slot, waiting up to `timeout` seconds (TimeoutError after that).

        It yields once even when a slot is free: a disconnect watcher that is already due then cancels a
        request whose client left before it was sent, before anything goes upstream.
        """
        await asyncio.sleep(0)
        if self.limit is None or (self.in_use < self.limit and not self.waiting):
            self.in_use += 1
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        queued_at = loop.time()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as this waiter gave up: pass it on
            else:
                waiter.cancel()  # left in the queue; release() skips it
            raise
        finally:
            self.waiting -= 1
            if self._metrics is not None:
                self._metrics.wait.observe(loop.time() - queued_at)

    def release(self) -> None:
        """Give a slot back: to the longest waiting request if there is one (and the limit was not lowered)."""
        if self.limit is None or self.in_use <= self.limit:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self.in_use -= 1

    def resize(self, limit: int | None) -> None:
        """A new limit: waiters that now fit are let through; above a lowered one, slots are not passed on."""
        self.limit = limit
        if self._metrics is not None:
            self._metrics.limit.set(limit or 0)
        while self._waiters and (limit is None or self.in_use < limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)
