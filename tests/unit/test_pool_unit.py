"""The upstream pool over scripted engines: ejection timings, DNS changes, retries before the first token only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.engine.base import EngineCapabilities, GenerationRequest, LoraAdapter
from gateway.engine.pool import PoolConfig, UpstreamPool
from gateway.engine.upstreams import EjectionPolicy, Upstream, UpstreamSet, UpstreamSource
from gateway.errors import UpstreamError, UpstreamRejectedError, UpstreamUnavailableError
from gateway.telemetry import RequestContext, set_current_request
from gateway.telemetry.upstream_metrics import UpstreamMetrics
from tests.unit.fake_engine import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CapableEngine(FakeEngine):
    def capabilities(self) -> EngineCapabilities | None:
        return EngineCapabilities(mode="ensemble", logprobs=True) if self.ready else None


def request(prompt: str = "Hello there", stream: bool = True) -> GenerationRequest:
    return GenerationRequest(request_id="cmpl-1", prompt=prompt, max_tokens=16, stream=stream)


def make_pool(
    engines: dict[str, FakeEngine], tokenizer: Any = None, **config: Any
) -> tuple[UpstreamPool, UpstreamMetrics]:
    metrics = UpstreamMetrics(CollectorRegistry())
    sources = [UpstreamSource.parse(address) for address in engines]
    pool = UpstreamPool(PoolConfig(model="m", **config), sources, engines.__getitem__, tokenizer, metrics)
    return pool, metrics


def value(metrics: UpstreamMetrics, name: str, *labels: str) -> float:
    return getattr(metrics, name).labels(*labels)._value.get()


async def collect(pool: UpstreamPool, generation: GenerationRequest) -> str:
    return "".join([delta.text async for delta in pool.generate(generation)])


def test_ejection_after_consecutive_failures_then_recovery_with_backoff() -> None:
    clock = Clock()
    upstream = Upstream("a:1", "a:1", FakeEngine(), EjectionPolicy(failures=3, base_s=2, max_s=5), clock)
    assert upstream.failed() is None and upstream.failed() is None
    upstream.succeeded()  # a success in between: the count starts over
    assert upstream.failed() is None and upstream.failed() is None
    assert upstream.failed() == 2 and not upstream.available()
    clock.now += 1.9
    assert not upstream.available()
    clock.now += 0.1
    assert upstream.available()  # back after base_s
    assert upstream.failed() == 4  # one more failure ejects again at once, for twice as long
    clock.now += 4
    assert upstream.available()
    assert upstream.failed() == 5  # capped at max_s
    clock.now += 5
    upstream.succeeded()
    assert [upstream.failed() for _ in range(3)] == [None, None, 2]  # a success clears the record


def test_upstream_sources_parse() -> None:
    assert UpstreamSource.parse("triton-0:8001") == UpstreamSource("triton-0:8001", "triton-0", 8001, False)
    assert UpstreamSource.parse("dns:///triton.ns.svc:8001").dns
    assert UpstreamSource.parse("[::1]:8001").host == "::1"
    for bad in ("triton", "triton:", "triton:99999", "dns:///:8001", "http://triton:8001"):
        with pytest.raises(ValueError, match="is not host:port"):
            UpstreamSource.parse(bad)


async def test_dns_changes_add_and_retire_upstreams() -> None:
    engines = {address: FakeEngine() for address in ("10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.3:8001")}
    answers = [{"10.0.0.1:8001", "10.0.0.2:8001"}, {"10.0.0.2:8001", "10.0.0.3:8001"}, None]
    upstreams = UpstreamSet([UpstreamSource.parse("dns:///triton:8001")], engines.__getitem__, EjectionPolicy())

    async def lookup(source: UpstreamSource) -> set[str] | None:
        return answers.pop(0)

    upstreams._lookup = lookup  # type: ignore[method-assign]
    await upstreams._resolve()
    assert sorted(u.address for u in upstreams.upstreams) == ["10.0.0.1:8001", "10.0.0.2:8001"]
    leaving = upstreams.upstreams[0]
    leaving.in_flight = 1  # a request still runs there
    await upstreams._resolve()
    assert sorted(u.address for u in upstreams.upstreams) == ["10.0.0.2:8001", "10.0.0.3:8001"]
    assert leaving.retired and not leaving.available()
    await upstreams._resolve()  # a failed lookup keeps what is known
    assert sorted(u.address for u in upstreams.upstreams) == ["10.0.0.2:8001", "10.0.0.3:8001"]
    await upstreams.close()


async def test_a_failure_before_the_first_delta_is_retried_once_elsewhere() -> None:
    broken = FakeEngine(fail_with=UpstreamUnavailableError("connection refused"))
    healthy = FakeEngine()
    pool, metrics = make_pool({"a:1": broken, "b:1": healthy}, policy="round_robin")
    await pool.start()
    assert await collect(pool, request()) == "Hello world!"
    assert await collect(pool, request()) == "Hello world!"
    assert len(broken.requests) == len(healthy.requests) == 2  # round robin came back to a:1 for the second
    assert value(metrics, "retries", "m", "a:1") == value(metrics, "failures", "m", "a:1") == 2
    assert value(metrics, "decisions", "m", "round_robin", "retry") == 2
    assert [u.in_flight for u in pool.upstreams] == [0, 0]
    await pool.close()


async def test_a_failure_after_a_delta_is_never_retried() -> None:
    broken = FakeEngine(fail_with=UpstreamError("stream broke"), fail_after=1)
    healthy = FakeEngine()
    pool, metrics = make_pool({"a:1": broken, "b:1": healthy}, policy="round_robin")
    await pool.start()
    seen = []
    with pytest.raises(UpstreamError, match="stream broke"):
        async for delta in pool.generate(request()):
            seen.append(delta.text)
    assert seen == ["Hello"] and healthy.requests == []
    assert value(metrics, "retries", "m", "a:1") == 0
    await pool.close()


async def test_the_requests_own_faults_are_neither_retried_nor_counted() -> None:
    refusing = FakeEngine(fail_with=UpstreamRejectedError("temperature out of range"))
    pool, metrics = make_pool({"a:1": refusing, "b:1": FakeEngine()}, policy="round_robin")
    await pool.start()
    with pytest.raises(UpstreamRejectedError):
        await collect(pool, request())
    assert value(metrics, "failures", "m", "a:1") == 0
    await pool.close()


async def test_an_ejected_upstream_gets_nothing_until_its_time_is_up() -> None:
    clock = Clock()
    broken = FakeEngine(fail_with=UpstreamUnavailableError("down"))
    engines = {"a:1": broken, "b:1": FakeEngine(), "c:1": FakeEngine()}
    metrics = UpstreamMetrics(CollectorRegistry())
    config = PoolConfig(model="m", policy="round_robin", ejection=EjectionPolicy(failures=2, base_s=5))
    sources = [UpstreamSource.parse(a) for a in engines]
    pool = UpstreamPool(config, sources, engines.__getitem__, None, metrics, clock)
    await pool.start()
    for _ in range(6):  # each failure on a:1 is retried elsewhere: no request fails
        assert await collect(pool, request()) == "Hello world!"
    assert len(broken.requests) == 2 and value(metrics, "ejections", "m", "a:1") == 1
    clock.now += 4.9
    for _ in range(6):
        await collect(pool, request())
    assert len(broken.requests) == 2
    clock.now += 0.1
    for _ in range(3):
        await collect(pool, request())
    assert len(broken.requests) == 3 and value(metrics, "ejections", "m", "a:1") == 2  # back, fails, out again
    await pool.close()


async def test_when_every_ready_upstream_is_ejected_they_are_tried_anyway() -> None:
    engine = FakeEngine(fail_with=UpstreamUnavailableError("down"))
    pool, metrics = make_pool({"a:1": engine}, ejection=EjectionPolicy(failures=2))
    await pool.start()
    for _ in range(4):  # concurrent failures of requests already running there do not extend the ejection
        with pytest.raises(UpstreamUnavailableError, match="down"):
            await collect(pool, request())
    assert value(metrics, "ejections", "m", "a:1") == 1 and len(engine.requests) == 4
    engine.fail_with = None  # Triton is back: the single upstream serves at once, ejected or not
    assert await collect(pool, request()) == "Hello world!"
    engine.ready = False
    with pytest.raises(UpstreamUnavailableError, match="no upstream of model 'm' is ready"):
        await collect(pool, request())
    await pool.close()


async def test_closing_early_releases_the_upstream_and_closes_its_stream() -> None:
    engine = FakeEngine(pieces=["a", "b", "c", "d"])
    pool, metrics = make_pool({"a:1": engine})
    await pool.start()
    deltas = pool.generate(request())
    assert (await anext(deltas)).text == "a"
    assert value(metrics, "in_flight", "m", "a:1") == 1
    await deltas.aclose()
    assert engine.closed_early == ["cmpl-1"]
    assert pool.upstreams[0].in_flight == 0 and value(metrics, "in_flight", "m", "a:1") == 0
    await pool.close()


async def test_not_ready_upstreams_get_nothing_and_capabilities_come_from_a_ready_one() -> None:
    down, up = CapableEngine(ready=False), CapableEngine()
    pool, _ = make_pool({"a:1": down, "b:1": up})
    await pool.start()
    for _ in range(5):
        await collect(pool, request())
    assert down.requests == [] and len(up.requests) == 5
    assert pool.capabilities() == EngineCapabilities(mode="ensemble", logprobs=True)
    assert pool.info().ready and pool.info().upstream == "triton grpc://a:1,b:1"
    up.ready = False
    assert not pool.info().ready and pool.capabilities() is None
    await pool.close()


async def test_prefix_affinity_keeps_a_conversation_on_one_upstream(tokenizer: Any) -> None:
    engines = {f"10.0.0.{i}:8001": FakeEngine() for i in range(3)}
    pool, metrics = make_pool(engines, tokenizer, policy="prefix_affinity", block_size=16)
    await pool.start()
    history = "You are a helpful assistant. " * 20
    for turn in range(6):
        history += f" user turn {turn}: tell me more about topic {turn}. assistant: here is more."
        await collect(pool, request(history))
    homes = [address for address, engine in engines.items() if engine.requests]
    assert len(homes) == 1 and len(engines[homes[0]].requests) == 6
    assert value(metrics, "decisions", "m", "prefix_affinity", "prefix_hit") == 5
    await pool.close()


async def test_a_session_header_routes_by_session() -> None:
    engines = {f"10.0.0.{i}:8001": FakeEngine() for i in range(3)}
    pool, metrics = make_pool(engines, policy="round_robin")
    await pool.start()
    context = RequestContext("r", "/v1/chat/completions")
    context.session = "conversation-7"
    set_current_request(context)
    try:
        for _ in range(6):
            await collect(pool, request())
    finally:
        set_current_request(None)
    assert sorted(len(e.requests) for e in engines.values()) == [0, 0, 6]
    assert value(metrics, "decisions", "m", "session", "session") == 6
    await pool.close()


async def test_a_finished_generation_clears_the_failure_record_even_when_the_consumer_stops_reading() -> None:
    engine = FakeEngine()
    pool, metrics = make_pool({"a:1": engine}, ejection=EjectionPolicy(failures=3))
    await pool.start()
    for _ in range(2):
        engine.fail_with = UpstreamError("broken")
        with pytest.raises(UpstreamError):
            await collect(pool, request())
    engine.fail_with = None
    deltas = pool.generate(request(stream=False))
    assert (await anext(deltas)).finish_reason is not None
    await deltas.aclose()  # as a consumer does once it has the finish
    engine.fail_with = UpstreamError("broken")
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await collect(pool, request())
    assert value(metrics, "ejections", "m", "a:1") == 0 and pool.upstreams[0].available()
    await pool.close()


class LoraEngine(FakeEngine):
    """Holds adapters like TensorRT-LLM's LoRA cache: a request without weights for one it lacks is refused."""

    held: set[int]

    async def generate(self, request: GenerationRequest):  # type: ignore[no-untyped-def,override]
        assert request.lora is not None
        if request.lora.weights is None and request.lora.task_id not in self.held:
            raise UpstreamUnavailableError(f"LoRA task {request.lora.task_id} not found in cache. Please send weights")
        self.held.add(request.lora.task_id)
        async for delta in super().generate(request):
            yield delta


async def test_adapter_weights_go_once_per_upstream_and_again_after_an_eviction() -> None:
    engine = LoraEngine()
    engine.held = set()
    pool, metrics = make_pool({"a:1": engine})
    await pool.start()
    adapter = LoraAdapter(7, weights="W")
    lora_request = replace(request(), lora=adapter)
    for _ in range(2):
        assert await collect(pool, lora_request) == "Hello world!"
    engine.held.clear()  # the upstream evicted it
    assert await collect(pool, lora_request) == "Hello world!"
    assert [r.lora.weights for r in engine.requests if r.lora] == ["W", None, "W"]
    assert value(metrics, "failures", "m", "a:1") == 0  # an eviction is not the upstream's fault
    await pool.close()
