"""The Redis limits backend against a real redis-server: the same answers as the in-process arithmetic for any
sequence of admissions and settlements, keys that expire by themselves, leases, and the error policies through
an outage and the recovery."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from gateway.tenants.limits import LEASE_S, Limits, Periods, Refusal, Reservation, Verdict
from gateway.tenants.local_limits import LocalLimits
from gateway.tenants.redis_limits import RedisLimits, redis_keys
from tests.e2e.redis_server import RedisServer, needs_redis, redis_server

pytestmark = [pytest.mark.e2e, needs_redis]

LIMITS = {
    "all": Limits(
        requests_per_minute=8, tokens_per_minute=1000, concurrent_requests=2, tokens_per_day=2500, tokens_per_month=3200
    ),
    "rates": Limits(requests_per_minute=4, tokens_per_minute=500),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as started:
        yield started


def reservation(key_id: str, limits: Limits, tokens: int, now: float) -> Reservation:
    return Reservation(uuid.uuid4().hex, key_id, tokens, limits, Periods.at(now))


def summary(verdict: Verdict) -> tuple[object, ...]:
    """What both backends must agree on, times to the millisecond."""

    def window(w: object) -> object:
        return None if w is None else (w.limit, w.remaining, round(w.reset_s, 3))  # type: ignore[attr-defined]

    retry = None if verdict.retry_after_s is None else round(verdict.retry_after_s, 3)
    return verdict.refusal, window(verdict.requests), window(verdict.tokens), retry


@pytest.mark.parametrize("seed", range(6))
async def test_redis_answers_as_the_in_process_arithmetic(server: RedisServer, seed: int) -> None:
    randomness = random.Random(seed)
    local = LocalLimits()
    shared = RedisLimits(server.url, "closed")
    run = uuid.uuid4().hex[:8]
    # Near the next UTC midnight, in the future (Redis expires budget keys at absolute times), across it.
    now = float((time.time() // 86400 + 1) * 86400 - 240 + randomness.randint(0, 60))
    running: list[Reservation] = []
    refusals = set()
    try:
        for _ in range(400):
            now = round(now + randomness.randint(0, 3000) / 1000, 3)
            if running and randomness.random() < 0.3:
                done = running.pop(randomness.randrange(len(running)))
                spent = randomness.randint(0, done.tokens)
                local.settle_now(done, spent)
                await shared.settle(done, spent)
                continue
            await shared.renew_now(now)  # what its renewal task does every 20 s: this process's requests still run
            name = randomness.choice(list(LIMITS))
            asked = reservation(f"{run}-{name}", LIMITS[name], randomness.randint(1, 600), now)
            expected, got = local.admit_now(asked, now), await shared.admit(asked, now)
            assert summary(got) == summary(expected)
            refusals.add(expected.refusal)
            if expected.admitted:
                running.append(asked)
    finally:
        await shared.close()
    # The sequence reached every limit (the day's budget too, in most seeds).
    assert {Refusal.CONCURRENCY, Refusal.REQUESTS, Refusal.TOKENS, Refusal.TOO_LARGE, Refusal.MONTH, None} <= refusals


async def test_every_key_expires_by_itself(server: RedisServer) -> None:
    shared = RedisLimits(server.url, "closed")
    now = time.time()
    asked = reservation(f"exp-{uuid.uuid4().hex[:8]}", LIMITS["all"], 100, now)
    try:
        assert (await shared.admit(asked, now)).admitted
    finally:
        await shared.close()
    client = redis.Redis(port=server.port)
    ttls = {key: client.pttl(key) for key in redis_keys(asked.key_id, asked)}
    assert all(ttl > 0 for ttl in ttls.values()), ttls  # -1 would be a key kept for ever
    assert max(ttls[k] for k in redis_keys(asked.key_id, asked)[:4]) <= 61_000


async def test_a_lease_not_renewed_ends_and_a_renewed_one_stays(server: RedisServer) -> None:
    shared = RedisLimits(server.url, "closed")
    limits = Limits(concurrent_requests=1)
    key = f"lease-{uuid.uuid4().hex[:8]}"
    now = time.time()
    try:
        held = reservation(key, limits, 0, now)
        assert (await shared.admit(held, now)).admitted
        later = now + LEASE_S * 0.9
        await shared.renew_now(later)  # still running: its lease now ends at later + LEASE_S
        refused = await shared.admit(reservation(key, limits, 0, now + LEASE_S * 1.5), now + LEASE_S * 1.5)
        assert refused.refusal is Refusal.CONCURRENCY
        # A replica that died renews nothing: its leases end.
        after = later + LEASE_S + 1
        assert (await shared.admit(reservation(key, limits, 0, after), after)).admitted
    finally:
        await shared.close()


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_an_outage_follows_the_policy_and_recovery_is_automatic(tmp_path: Path, policy: str) -> None:
    with redis_server(tmp_path) as server:
        shared = RedisLimits(server.url, policy)  # type: ignore[arg-type]
        limits = Limits(requests_per_minute=1000)
        key = f"outage-{uuid.uuid4().hex[:8]}"
        try:
            assert (await shared.admit(reservation(key, limits, 0, time.time()), time.time())).admitted
            server.stop()
            started = time.monotonic()
            verdict = await shared.admit(reservation(key, limits, 0, time.time()), time.time())
            assert time.monotonic() - started < 1.0  # a dead Redis costs a request no long timeout
            if policy == "open":
                assert verdict.admitted and verdict.unchecked
            else:
                assert verdict.refusal is Refusal.UNAVAILABLE and verdict.retry_after_s == 1.0
            server.start()
            deadline = time.monotonic() + 5
            while True:
                verdict = await shared.admit(reservation(key, limits, 0, time.time()), time.time())
                if verdict.admitted and not verdict.unchecked:
                    break
                assert time.monotonic() < deadline, "limits did not apply again after Redis came back"
                time.sleep(0.2)
            assert verdict.requests is not None and verdict.requests.remaining == 999  # a fresh Redis
        finally:
            await shared.close()


@contextlib.asynccontextmanager
async def started_with_admin(server: RedisServer) -> AsyncIterator[tuple[RedisLimits, redis.Redis]]:
    """A started `closed` backend, and a plain client to pause Redis with."""
    shared = RedisLimits(server.url, "closed")
    client = redis.Redis(port=server.port)
    try:
        await shared.start()
        yield shared, client
    finally:
        client.client_unpause()
        client.close()
        await shared.close()


async def test_a_busy_event_loop_is_not_taken_for_an_outage(server: RedisServer) -> None:
    # Redis answers after 0.1 s, while the loop is busy for 0.4 s with another request's synchronous step (a huge
    # prompt's tokenization): the loop gets back to the reply past the 0.25 s timeout, and reads it instead of
    # counting Redis as unreachable (which would refuse everyone for a second under `closed`).
    key = f"busy-{uuid.uuid4().hex[:8]}"
    async with started_with_admin(server) as (shared, client):
        for remaining in (3, 2):
            client.client_pause(100, all=True)
            asyncio.get_running_loop().call_later(0.02, time.sleep, 0.4)
            verdict = await shared.admit(reservation(key, LIMITS["rates"], 10, time.time()), time.time())
            assert verdict.refusal is None
            assert verdict.requests is not None and verdict.requests.remaining == remaining  # checked, not let through


async def test_a_redis_that_does_not_answer_is_given_up_after_the_timeout(server: RedisServer) -> None:
    key = f"paused-{uuid.uuid4().hex[:8]}"
    async with started_with_admin(server) as (shared, client):
        client.client_pause(2000, all=True)  # Redis takes connections and commands, and answers none for 2 s
        started = time.monotonic()
        verdict = await shared.admit(reservation(key, LIMITS["rates"], 10, time.time()), time.time())
        assert verdict.refusal is Refusal.UNAVAILABLE
        assert 0.2 < time.monotonic() - started < 1.0
