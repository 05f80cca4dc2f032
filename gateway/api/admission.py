"""Admission control for generation endpoints: a concurrency limit, a bounded wait queue, draining.

Beyond `max_active` running requests, up to `max_waiting` wait for at most `wait_timeout` seconds; anything else
gets a 429 with Retry-After at once. Waiters are admitted by their API key's priority class, first come, first
served within a class, and aged so that the lowest class is never starved (tenants/priority.py). A slot is held
until the response has been sent completely, streamed bodies included, which is why this is ASGI middleware. It
is taken only once the request's body is complete (api/request_body.py runs first), so slow senders hold none, and
a client that leaves while waiting in line gives up its place.

The saturation gauge is (running + queued) / max_active: 1 means every slot is busy, above 1 requests queue,
1 + max_waiting / max_active means the next one gets a 429. Autoscalers scale on it (README, Observability).
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.api.auth import api_key_of
from gateway.api.request_body import replaying_messages
from gateway.errors import OverloadedError, ShuttingDownError
from gateway.tenants.priority import NORMAL, AgingQueue

# The generation routes, listed once: they queue here, are labelled by the telemetry, and (through the pipeline)
# are admitted against their key's limits. A new protocol's routes join by being listed.
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"})
RETRY_AFTER_S = "1"


class AdmissionLimiter:
    """Counts running requests and queues the overflow."""

    def __init__(
        self,
        max_active: int,
        max_waiting: int,
        wait_timeout: float,
        waiting_gauge: Gauge,
        saturation_gauge: Gauge | None = None,
        aging_s: float = 10.0,
    ) -> None:
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self.active = 0
        self.queued = 0
        self._waiters: AgingQueue[asyncio.Future[None]] = AgingQueue(aging_s, time.monotonic)
        self._waiting_gauge = waiting_gauge
        self._saturation_gauge = saturation_gauge

    def saturation(self) -> float:
        """(running + queued) / max_active."""
        return (self.active + self.queued) / self.max_active

    def _publish(self) -> None:
        if self._saturation_gauge is not None:
            self._saturation_gauge.set(self.saturation())

    def try_acquire(self) -> bool:
        """Take a free slot if there is one, without waiting."""
        if self.active < self.max_active and not self._waiters:
            self.active += 1
            self._publish()
            return True
        return False

    async def acquire(self, priority: int = NORMAL) -> None:
        """Take a slot, waiting in line (in the `priority` class) if allowed; OverloadedError otherwise."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_waiting:
            raise OverloadedError(f"The server is at capacity ({self.max_active} requests running); try again.")
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.push(ticket, priority)
        self._waiting_gauge.inc()
        self.queued += 1
        self._publish()
        try:
            await asyncio.wait_for(asyncio.shield(ticket), self.wait_timeout)
        except BaseException as exc:
            if ticket.done() and not ticket.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # the slot was handed over just as the wait ended: keep it
                self.release()  # handed a slot, but our client left: pass it on
                raise
            ticket.cancel()
            self._waiters.remove(ticket)
            if isinstance(exc, TimeoutError):
                raise OverloadedError(
                    f"The server is at capacity; no slot freed up within {self.wait_timeout:g} s. Try again."
                ) from None
            raise
        finally:
            self._waiting_gauge.dec()
            self.queued -= 1
            self._publish()

    def release(self) -> None:
        """Give the slot to the next in line, or free it."""
        while self._waiters:
            ticket = self._waiters.pop()
            if not ticket.done():
                ticket.set_result(None)  # the slot passes on: `active` stays the same
                return
        self.active -= 1
        self._publish()


class DrainState:
    """Set when the gateway starts shutting down: new generation requests are refused."""

    def __init__(self) -> None:
        self.draining = False


class AdmissionMiddleware:
    """Applies the limiter and the drain state to generation endpoints."""

    def __init__(self, app: ASGIApp, limiter: AdmissionLimiter | None, drain: DrainState) -> None:
        self.app = app
        self.limiter = limiter
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, queue or refuse one request."""
        if scope["type"] != "http" or scope["path"] not in GENERATION_PATHS:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await send_error(scope, send, ShuttingDownError("The server is shutting down; send the request elsewhere."))
            return
        if self.limiter is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        try:
            admitted = await self._admit(self.limiter, receive, held, _priority(scope))
        except OverloadedError as exc:
            await send_error(scope, send, exc, {"Retry-After": RETRY_AFTER_S})
            return
        if not admitted:
            return  # the client left while waiting in line: nobody to answer (the telemetry records a 499)
        if held:  # what the watch read while waiting (the buffered body) goes to the app first
            receive = replaying_messages(held, receive)
            del held
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release()

    @staticmethod
    async def _admit(limiter: AdmissionLimiter, receive: Receive, held: list[Message], priority: int) -> bool:
        """Take a slot; False (and no slot) if the client disconnects while waiting in line for one, so that a
        client gone from the queue neither keeps its place nor starts an upstream call once a slot frees up."""
        if limiter.try_acquire():
            return True
        waiting = asyncio.ensure_future(limiter.acquire(priority))
        leaving = asyncio.ensure_future(_until_disconnected(receive, held))
        try:
            await asyncio.wait((waiting, leaving), return_when=asyncio.FIRST_COMPLETED)
        finally:
            leaving.cancel()
            if not waiting.done():
                waiting.cancel()
                await asyncio.wait((waiting,))  # leaves the line now; passes on a slot handed over just now
        if waiting.done() and not waiting.cancelled():
            waiting.result()  # OverloadedError: the queue was full, or no slot freed up in time
            return True
        return False


def _priority(scope: Scope) -> int:
    """The request's priority class: its API key's, else normal."""
    key = api_key_of(scope)
    return key.priority if key is not None else NORMAL


async def _until_disconnected(receive: Receive, held: list[Message]) -> None:
    """Read the server's messages until the disconnect, keeping the others for the app."""
    while (message := await receive())["type"] != "http.disconnect":
        held.append(message)
