"""At most N calls open at one upstream Triton; further requests wait here, in the gateway, in arrival order.

A request abandoned while it waits here costs nothing. One that has been sent may sit in Triton's queues
(preprocessing, the ensemble scheduler, the queue in front of `tensorrt_llm`), where neither a stop request nor
a safe cancel reaches it (docs/architecture.md, "Ending a generation"): in a storm of hang-ups, the fewer such
requests, the sooner Triton is idle again. A slot is held until the call has ended upstream, not until the
client leaves, so abandoned calls that are still being stopped count against the limit.
"""

from __future__ import annotations

import asyncio
from collections import deque


class UpstreamSlots:
    """A FIFO counting semaphore whose `acquire` always lets other tasks run first."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, timeout: float | None) -> None:
        """Take a slot, waiting up to `timeout` seconds (TimeoutError after that).

        It yields once even when a slot is free: a disconnect watcher that is already due then cancels a
        request whose client left before it was sent, before anything goes upstream.
        """
        await asyncio.sleep(0)
        if self.limit is None or (self.in_use < self.limit and not self.waiting):
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waiting += 1
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

    def release(self) -> None:
        """Give a slot back: to the longest waiting request if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_use -= 1
