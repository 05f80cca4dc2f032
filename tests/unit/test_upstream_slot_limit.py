"""The upstream slot limit: by default the workers' share of twice the engine's max_batch_size as Triton declares
it (128 where it declares none), resized when it changes, with the limit and the waits in /metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import grpc
import pytest

from bench.fake_triton import FakeTritonChannel, dev_model_configs
from gateway.app import build_registry
from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from gateway.engine.pool import UpstreamPool
from gateway.engine.upstream_slots import UpstreamSlots, limit_for_batch
from gateway.telemetry import GatewayMetrics

SLOTS_GAUGE = re.compile(r'^gateway_upstream_slots\{model="[^"]+",upstream="([^"]+)"\} (\S+)$', re.MULTILINE)
WAIT_COUNT = re.compile(r"^gateway_upstream_slot_wait_seconds_count\{[^}]*\} (\S+)$", re.MULTILINE)


def test_the_limit_is_each_workers_share_of_twice_the_batch() -> None:
    assert limit_for_batch(64, 1) == 128
    assert limit_for_batch(256, 4) == 128
    assert limit_for_batch(100, 3) == 67  # rounded up: the workers together never get less than twice the batch
    assert limit_for_batch(1, 8) == 1


@contextmanager
def triton_declaring(batch: int | None) -> Iterator[Path]:
    """Every channel opened meanwhile reaches a stand-in Triton whose tensorrt_llm declares `batch` (None: no
    tensorrt_llm model at all)."""
    model_dir = ensure_dev_model()
    configs = dev_model_configs(model_dir)
    if batch is None:
        del configs["tensorrt_llm"]
    else:
        configs["tensorrt_llm"].max_batch_size = batch
    channel = FakeTritonChannel(configs, [(1, "a")])
    with mock.patch.object(grpc.aio, "insecure_channel", lambda *_, **__: channel):
        yield model_dir


async def discovered_limit(batch: int | None, **settings: object) -> tuple[int | None, str]:
    """The slot limit of the engine once the model is discovered, and the gateway's /metrics text."""
    with triton_declaring(batch) as model_dir:
        config = Settings(tokenizer=model_dir, served_model_name=DEV_MODEL_NAME, **settings)  # type: ignore[arg-type]
        metrics = GatewayMetrics()
        pool = build_registry(config, metrics).get(DEV_MODEL_NAME).engine
        assert isinstance(pool, UpstreamPool)
        await pool.start()
        try:
            limit = pool.upstreams[0].engine._slots.limit  # type: ignore[attr-defined]
        finally:
            await pool.close()
    return limit, metrics.exposition().decode()


@pytest.mark.parametrize(
    ("batch", "settings", "expected"),
    [
        (256, {}, 512),  # a large engine is not throttled by a fixed 128
        (256, {"workers": 4}, 128),  # four workers share it
        (16, {"triton_model": "tensorrt_llm"}, 32),  # direct mode: the called model is the engine
        (None, {}, 128),  # no engine model to read: the fixed default
        (256, {"max_upstream_requests": 50}, 50),  # a limit that is set is kept
        (256, {"max_upstream_requests": 0}, None),  # 0: no limit
    ],
)
async def test_the_default_limit_follows_the_batch_size_triton_declares(
    batch: int | None, settings: dict[str, object], expected: int | None
) -> None:
    limit, exposition = await discovered_limit(batch, **settings)
    assert limit == expected
    assert [float(value) for _, value in SLOTS_GAUGE.findall(exposition)] == [float(expected or 0)]


async def test_a_raised_limit_lets_waiters_through_and_a_lowered_one_passes_no_slot_on() -> None:
    slots = UpstreamSlots(1)
    await slots.acquire(None)
    waiters = [asyncio.create_task(slots.acquire(None)) for _ in range(3)]
    await asyncio.sleep(0.01)
    slots.resize(3)
    await asyncio.sleep(0.01)
    assert sum(task.done() for task in waiters) == 2 and slots.in_use == 3 and slots.waiting == 1
    slots.resize(1)
    slots.release()  # 3 -> 2 open: still above the new limit, the last waiter keeps waiting
    slots.release()
    await asyncio.sleep(0.01)
    assert not waiters[2].done() and slots.in_use == 1
    slots.release()  # at the limit: handed over
    await asyncio.wait_for(waiters[2], 1)
    assert slots.in_use == 1 and slots.waiting == 0


async def test_only_requests_that_found_no_free_slot_are_counted_as_waits() -> None:
    metrics = GatewayMetrics()
    slots = UpstreamSlots(1, metrics.upstreams.slots("m", "a:1"))
    await slots.acquire(None)  # a free slot: no wait recorded
    waiter = asyncio.create_task(slots.acquire(None))
    await asyncio.sleep(0.02)
    slots.release()
    await waiter
    with pytest.raises(TimeoutError):
        await slots.acquire(0.01)  # gave up: recorded too
    text = metrics.exposition().decode()
    assert [float(count) for count in WAIT_COUNT.findall(text)] == [2.0]
    assert 'gateway_upstream_slot_wait_seconds_bucket{le="0.001",model="m",upstream="a:1"} 0.0' in text
    assert 'gateway_upstream_slots{model="m",upstream="a:1"} 1.0' in text


def test_a_removed_labelled_child_is_exported_again_once_set_again() -> None:
    metrics = GatewayMetrics()
    metrics.upstreams.slot_limit.labels("m", "a:1").set(5)
    metrics.upstreams.slot_limit.remove("m", "a:1")
    assert "a:1" not in metrics.exposition().decode()
    metrics.upstreams.slot_limit.labels("m", "a:1").set(7)
    assert 'gateway_upstream_slots{model="m",upstream="a:1"} 7.0' in metrics.exposition().decode()
