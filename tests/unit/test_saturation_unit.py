"""The saturation gauge follows running and queued requests against the concurrency limit."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge

from gateway.api.admission import AdmissionLimiter
from gateway.telemetry import GatewayMetrics


def limiter(max_active: int, max_waiting: int) -> tuple[AdmissionLimiter, Gauge]:
    registry = CollectorRegistry()
    saturation = Gauge("saturation", "test", registry=registry)
    waiting = Gauge("waiting", "test", registry=registry)
    return AdmissionLimiter(max_active, max_waiting, 5, waiting, saturation), saturation


async def test_saturation_counts_running_then_queued_requests() -> None:
    admission, gauge = limiter(max_active=2, max_waiting=2)
    await admission.acquire()
    assert gauge._value.get() == 0.5
    await admission.acquire()
    assert gauge._value.get() == 1.0
    waiter = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    assert gauge._value.get() == 1.5  # one queued on top of two running
    admission.release()  # the slot passes to the waiter: still two running, none queued
    await asyncio.wait_for(waiter, 1)
    assert gauge._value.get() == 1.0
    admission.release()
    admission.release()
    assert gauge._value.get() == 0.0


async def test_saturation_drops_when_a_queued_client_leaves() -> None:
    admission, gauge = limiter(max_active=1, max_waiting=1)
    await admission.acquire()
    waiter = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    assert gauge._value.get() == 2.0
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gauge._value.get() == 1.0


def test_gateway_exports_the_saturation_gauge_as_its_busiest_worker() -> None:
    metrics = GatewayMetrics()
    assert metrics.saturation._multiprocess_mode == "livemax"
    assert b"gateway_saturation_ratio 0.0" in metrics.exposition()
