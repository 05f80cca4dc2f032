"""The limits' counters in Redis (`--limits-url redis://...`), shared by every replica and worker.

One script call per admission and one per settlement (gateway/tenants/redis_scripts.py), atomic on the server.
Concurrency leases of this process's running requests are renewed in one pipelined round trip every third of a
lease. When Redis cannot be reached (a failed or slow call: an answer later than 0.25 s of the event loop's time,
see `answer_within`), admissions follow `on_error`:
`open` admits without a check, `closed` refuses with a 429; either way it is counted and logged (once per
10 s at most), and Redis is not asked again for a second, so an outage costs no request a timeout. When Redis is
back, the next call after that second reconnects and limits apply again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Literal, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.errors import ConfigurationError
from gateway.telemetry.tenant_metrics import TenantMetrics
from gateway.tenants.limits import LEASE_S, WINDOW_S, Refusal, Reservation, Verdict, Window
from gateway.tenants.redis_scripts import ADMIT, RENEW, SETTLE

logger = logging.getLogger(__name__)

ErrorPolicy = Literal["open", "closed"]
T = TypeVar("T")
TIMEOUT_S = 0.25  # a call slower than this counts as Redis being unreachable
LATE_S = 0.05  # a timer this late means the event loop was busy with something else, not that Redis was slow
SOCKET_TIMEOUT_S = 5.0  # the client's own timeouts: a backstop only, they count a busy event loop as Redis's time
PAUSE_S = 1.0  # after a failure, Redis is not asked for this long
LOG_EVERY_S = 10.0
UNAVAILABLE_RETRY_S = 1.0


def redis_keys(key_id: str, reservation: Reservation) -> list[str]:
    """The six keys of one API key's counters (the order the scripts take them in)."""
    prefix = f"tg:lim:{{{key_id}}}:"
    periods = reservation.periods
    return [prefix + "rq", prefix + "tk", prefix + "tv", prefix + "cc", prefix + "d" + periods.day,
            prefix + "m" + periods.month]  # fmt: skip


class _LoopTimeDeadline:
    """Cancels `task` once `timeout_s` have passed, unless its timer fires late (the event loop was busy with
    something else): then it looks again a little later, after what came in meanwhile has been read."""

    def __init__(self, task: asyncio.Task[object], timeout_s: float) -> None:
        self.task = task
        self.expired = False
        self._loop = asyncio.get_running_loop()
        self._handle = self._at(self._loop.time() + timeout_s)

    def _at(self, due: float) -> asyncio.TimerHandle:
        return self._loop.call_at(due, self._fire, due)

    def _fire(self, due: float) -> None:
        now = self._loop.time()
        if now - due >= LATE_S:
            self._handle = self._at(now + LATE_S)
        else:
            self.expired = True
            self.task.cancel()

    def cancel(self) -> None:
        self._handle.cancel()


async def answer_within(call: Awaitable[T], timeout_s: float) -> T:
    """`call`'s result, or TimeoutError when it takes longer than `timeout_s`. A stretch in which the event loop ran
    something else (a long synchronous step of another request: a huge prompt's tokenization) does not count: when
    the timer fires that late, a reply that came in meanwhile is read before the call is given up."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("answer_within runs in a task")
    deadline = _LoopTimeDeadline(task, timeout_s)
    try:
        answer = await call
    except asyncio.CancelledError:
        if deadline.expired and task.uncancel() == 0:
            raise TimeoutError(f"no answer within {timeout_s} s") from None
        raise  # cancelled from outside: the call with it
    finally:
        deadline.cancel()
    if deadline.expired:
        task.uncancel()  # the call ended without letting the cancellation through
    return answer


def _ms(seconds: float | int | None) -> int:
    return 0 if seconds is None else round(seconds * 1000)


class RedisLimits:
    """A LimitsBackend in Redis."""

    def __init__(self, url: str, on_error: ErrorPolicy, metrics: TenantMetrics | None = None) -> None:
        # One retry on a broken connection (after a Redis restart the pooled connections are dead), never on a
        # timeout: the script might have run.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        try:
            self._redis = aioredis.Redis.from_url(
                url,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                retry=retry,
                retry_on_timeout=False,
            )
        except ValueError as exc:  # the URL may hold a password: it is not repeated
            raise ConfigurationError(f"--limits-url: not a Redis URL: {exc}") from None
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)
        self._renew = self._redis.register_script(RENEW)
        self.on_error = on_error
        self._metrics = metrics
        self._paused_until = 0.0
        self._failures = 0
        self._last_log = 0.0
        self._running: dict[str, Reservation] = {}  # reservations with a lease, by id
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Say whether Redis answers (a start without it is allowed: the error policy applies); renew leases."""
        try:
            await answer_within(self._redis.ping(), TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
        self._renewer = asyncio.get_running_loop().create_task(self._renew_leases())

    async def close(self) -> None:
        """Stop renewing and close the connections."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self._redis.aclose()

    async def admit(self, reservation: Reservation, now: float) -> Verdict:
        """One script call: check and charge every limit, or the error policy's answer."""
        if time.monotonic() < self._paused_until:
            return self._unavailable()
        limits, periods = reservation.limits, reservation.periods
        args: list[str | int] = [_ms(now), reservation.id, reservation.tokens, limits.requests_per_minute or 0,
                limits.tokens_per_minute or 0, limits.concurrent_requests or 0, limits.tokens_per_day or 0,
                limits.tokens_per_month or 0, _ms(WINDOW_S), _ms(LEASE_S), _ms(periods.day_ends),
                _ms(periods.month_ends)]  # fmt: skip
        try:
            answer = await answer_within(
                self._admit(keys=redis_keys(reservation.key_id, reservation), args=args), TIMEOUT_S
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return self._unavailable()
        refusal_name, requests, requests_reset, tokens, tokens_reset, retry = answer
        refusal = Refusal(refusal_name.decode()) if refusal_name else None
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if refusal is None and limits.concurrent_requests is not None:
            self._running[reservation.id] = reservation
        return Verdict(
            reservation=reservation if refusal is None else None,
            refusal=refusal,
            requests=Window(rpm, max(rpm - requests, 0), requests_reset / 1000) if rpm is not None else None,
            tokens=Window(tpm, max(tpm - tokens, 0), tokens_reset / 1000) if tpm is not None else None,
            retry_after_s=retry / 1000 if retry >= 0 else None,
        )

    async def settle(self, reservation: Reservation, spent: int) -> None:
        """One script call: the lease released, the reservation's charges corrected to what was used."""
        self._running.pop(reservation.id, None)
        limits = reservation.limits
        flags = [limits.tokens_per_minute, limits.concurrent_requests, limits.tokens_per_day, limits.tokens_per_month]
        args = [reservation.id, spent - reservation.tokens, *("0" if flag is None else "1" for flag in flags)]
        try:
            await answer_within(self._settle(keys=redis_keys(reservation.key_id, reservation), args=args), TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            # The reservation stays charged until its entries leave the window and its lease ends: conservative.
            self._failed(exc)

    def _unavailable(self) -> Verdict:
        if self.on_error == "open":
            return Verdict(unchecked=True)
        return Verdict(refusal=Refusal.UNAVAILABLE, retry_after_s=UNAVAILABLE_RETRY_S)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._paused_until = now + PAUSE_S
        self._failures += 1
        if self._metrics is not None:
            self._metrics.backend_errors.inc()
        if now - self._last_log >= LOG_EVERY_S:
            policy = "admitting without limits" if self.on_error == "open" else "refusing with 429"
            logger.error(
                "limits backend (Redis) unreachable, %s (%d failures since the last message): %s: %s",
                policy, self._failures, type(exc).__name__, exc,
            )  # fmt: skip
            self._failures = 0
            self._last_log = now

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            await self.renew_now(time.time())

    async def renew_now(self, now: float) -> None:
        """Extend the leases of this process's running requests (one pipelined round trip)."""
        by_key: dict[str, list[Reservation]] = {}
        for reservation in self._running.values():
            by_key.setdefault(reservation.key_id, []).append(reservation)
        if not by_key:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id, reservations in by_key.items():
                    keys = [redis_keys(key_id, reservations[0])[3]]
                    args: list[str | int] = [_ms(now + LEASE_S), _ms(LEASE_S), *(r.id for r in reservations)]
                    await self._renew(keys=keys, args=args, client=pipe)
                await answer_within(pipe.execute(), TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
