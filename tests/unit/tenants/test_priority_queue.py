"""The admission queue's order: higher classes first, first come first served within one, and aging so the lowest
class is admitted within a bound however many higher requests keep arriving."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge

from gateway.api.admission import AdmissionLimiter
from gateway.tenants.priority import HIGH, LOW, NORMAL, AgingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_higher_classes_first_then_arrival_order() -> None:
    queue: AgingQueue[str] = AgingQueue(aging_s=10, clock=Clock())
    for item, rank in (("low-1", LOW), ("normal-1", NORMAL), ("high-1", HIGH), ("normal-2", NORMAL), ("high-2", HIGH)):
        queue.push(item, rank)
    assert [queue.pop() for _ in range(5)] == ["high-1", "high-2", "normal-1", "normal-2", "low-1"]
    assert len(queue) == 0


def test_a_low_request_is_not_starved_by_endless_high_arrivals() -> None:
    """One slot frees every second while two high requests arrive every second (more than can run): the low one,
    queued first, is overtaken only by high requests that arrived within (HIGH - LOW) x aging_s after it, so it
    gets a slot after a bounded number of them, however long the stream of high arrivals lasts."""
    clock = Clock()
    aging_s = 5.0
    queue: AgingQueue[tuple[str, float]] = AgingQueue(aging_s=aging_s, clock=clock)
    queue.push(("low", 0.0), LOW)
    overtaken_by: list[float] = []
    for tick in range(1, 200):
        clock.now = tick / 2
        queue.push(("high", clock.now), HIGH)
        if tick % 2 == 0:
            name, arrived = queue.pop()
            if name == "low":
                break
            overtaken_by.append(arrived)
    else:
        raise AssertionError("the low request was never admitted")
    assert max(overtaken_by) <= (HIGH - LOW) * aging_s
    assert clock.now <= 30  # (two per second for 10 s, one served per second)


def test_without_aging_pressure_a_high_request_overtakes() -> None:
    clock = Clock()
    queue: AgingQueue[str] = AgingQueue(aging_s=10, clock=clock)
    queue.push("low", LOW)
    clock.now = 19.0  # low stands at 1.9, a new high at 2
    queue.push("high", HIGH)
    assert queue.pop() == "high"


def test_a_waiter_that_leaves_is_removed() -> None:
    queue: AgingQueue[object] = AgingQueue(aging_s=10, clock=Clock())
    first, second = object(), object()
    queue.push(first, NORMAL)
    queue.push(second, NORMAL)
    assert queue.remove(first) and not queue.remove(first)
    assert queue.pop() is second and len(queue) == 0


async def test_the_limiter_hands_freed_slots_to_the_highest_class() -> None:
    gauge = Gauge("waiting", "test", registry=CollectorRegistry())
    limiter = AdmissionLimiter(max_active=1, max_waiting=10, wait_timeout=5, waiting_gauge=gauge, aging_s=60)
    await limiter.acquire()
    order: list[str] = []

    async def wait(name: str, rank: int) -> None:
        await limiter.acquire(rank)
        order.append(name)

    tasks = [asyncio.create_task(wait(name, rank)) for name, rank in (("low", LOW), ("normal", NORMAL), ("high", HIGH))]
    await asyncio.sleep(0.01)
    for _ in range(3):
        limiter.release()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["high", "normal", "low"]
    limiter.release()
    assert limiter.active == 0
