"""Hang-up storms against the real Triton: once the gateway has let go of the clients, Triton runs nothing.

"Running" and "pending" are read from Triton's /metrics the way an operator would: Triton's own
`nv_inference_pending_request_count` (every model: preprocessing, the ensemble, tensorrt_llm, postprocessing,
BLS), the backend's `nv_trt_llm_request_metrics{request_type="active"}`, and the dev engine's
`dev_engine_running_requests`, which also counts requests waiting in the engine's own queue (the real backend
exports no such gauge). A request that reached the engine after its stop would start later: the generated-token
counter must not move once Triton is idle.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

MODES = {"ensemble": "ensemble", "bls": "tensorrt_llm_bls", "direct": "tensorrt_llm"}
GAUGE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)
IDLE_AFTER_S = 1.0  # the requirement: this long after the gateway let go, Triton runs nothing


@dataclass
class TritonLoad:
    """What Triton still holds, from its /metrics."""

    pending: float  # nv_inference_pending_request_count, all models
    active: float  # nv_trt_llm_request_metrics{request_type="active"}
    in_engine: float  # dev_engine_running_requests: queued in the engine or generating
    tokens: float  # dev_engine_generated_tokens_total
    pending_by_model: dict[str, float] = field(default_factory=dict)  # where the pending ones are

    @property
    def idle(self) -> bool:
        """Nothing pending anywhere, nothing in the engine."""
        return self.pending == 0 and self.active == 0 and self.in_engine == 0


def triton_load(triton: TritonServer) -> TritonLoad:
    """Read the gauges (summed over models and instances)."""
    totals = {"pending": 0.0, "active": 0.0, "in_engine": 0.0, "tokens": 0.0}
    by_model: dict[str, float] = {}
    for name, labels, value in GAUGE.findall(httpx.get(triton.metrics_url, timeout=10).text):
        if name == "nv_inference_pending_request_count":
            totals["pending"] += float(value)
            if float(value):
                by_model[labels] = float(value)
        elif name == "nv_trt_llm_request_metrics" and 'request_type="active"' in labels:
            totals["active"] += float(value)
        elif name == "dev_engine_running_requests":
            totals["in_engine"] += float(value)
        elif name == "dev_engine_generated_tokens_total":
            totals["tokens"] += float(value)
    return TritonLoad(**totals, pending_by_model=by_model)


def generation_requests_in_flight(gateway: GatewayProcess) -> float:
    """The gateway's in-flight gauge for the generation endpoints."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        float(value)
        for name, labels, value in GAUGE.findall(text)
        if name == "gateway_requests_in_flight" and "completions" in labels
    )


def wait_until(condition: object, limit_s: float, what: str) -> float:
    """Poll `condition()` until true; seconds it took. Fails after `limit_s`."""
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < limit_s, f"{what} not reached within {limit_s} s"
        time.sleep(0.05)
    return time.monotonic() - start


def raw_request(gateway: GatewayProcess, index: int, stream: bool | None = None) -> bytes:
    """An HTTP/1.1 request: chat and completions, streamed and not, in turn (max_tokens 256)."""
    chat = index % 4 >= 2
    stream = index % 2 == 0 if stream is None else stream
    body: dict[str, object] = {"model": gateway.model, "max_tokens": 256, "stream": stream, "ignore_eos": True}
    if chat:
        body["messages"] = [{"role": "user", "content": f"storm {index}"}]
    else:
        body["prompt"] = f"storm {index}"
    data = json.dumps(body).encode()
    path = "/v1/chat/completions" if chat else "/v1/completions"
    head = f"POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {len(data)}"
    return head.encode() + b"\r\n\r\n" + data


async def send_and_hang_up(port: int, requests: list[bytes], hold_s: float) -> int:
    """Each request on its own connection, all at once; every client closes `hold_s` after sending. Returns how
    many connections were made (a gateway may refuse some under such a storm)."""

    async def one(request: bytes) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(hold_s)
        writer.close()
        return True

    return sum(await asyncio.gather(*(one(request) for request in requests)))


def chat_seconds(gateway: GatewayProcess) -> float:
    """A normal chat completion: must answer 200; its duration."""
    start = time.monotonic()
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": gateway.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    return time.monotonic() - start


def pace(triton: TritonServer, load: TritonLoad) -> str:
    """Whether a Triton that is not idle still generates: a second look 1 s later, for the failure message."""
    time.sleep(1.0)
    later = triton_load(triton)
    if later.tokens > load.tokens:
        return f"1 s later it had generated {later.tokens - load.tokens:.0f} more tokens: {later}"
    return f"1 s later no more tokens, stuck? (BLS mode: the deadlock in triton_repo/README.md, Known defects): {later}"


def assert_storm_leaves_nothing(triton: TritonServer, gateway: GatewayProcess, requests: list[bytes], hold_s: float):
    """Storm, wait until the gateway has let go of every client, then check Triton 1 s later, and a chat."""
    wait_until(lambda: triton_load(triton).idle, 30, "Triton idle before the storm")
    baseline = chat_seconds(gateway)
    port = int(gateway.url.rsplit(":", 1)[1])
    connected = asyncio.run(send_and_hang_up(port, requests, hold_s))
    assert connected >= len(requests) * 0.9
    let_go = wait_until(lambda: generation_requests_in_flight(gateway) == 0, 60, "the gateway letting go")
    time.sleep(IDLE_AFTER_S)
    load = triton_load(triton)
    assert load.idle, (
        f"{IDLE_AFTER_S} s after the gateway let go ({let_go:.1f} s after the storm): {load}; {pace(triton, load)}"
    )
    time.sleep(0.5)
    assert triton_load(triton).tokens == load.tokens, "a request started generating after the storm"
    assert chat_seconds(gateway) < baseline + 1.0  # not slowed down by leftovers, not refused


def _gateways(triton: TritonServer, log_dir: Path) -> Iterator[dict[str, GatewayProcess]]:
    gateways = {mode: start_gateway(triton, log_dir, "--triton-model", model) for mode, model in MODES.items()}
    yield gateways
    for gateway in gateways.values():
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def storm_triton() -> Iterator[TritonServer]:
    """64 active, 20 ms to the first token and 20 ms per token: a GPU engine's pace at that batch size (faster
    tokens only pile up in front of the CPU-bound Python postprocessing of the dev stack)."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=20, synthetic_itl_ms=20)) as server:
        yield server


@pytest.fixture(scope="module")
def storm_gateways(storm_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory):
    yield from _gateways(storm_triton, tmp_path_factory.mktemp("storm"))


@pytest.fixture(scope="module")
def slow_start_triton() -> Iterator[TritonServer]:
    """Two seconds to the first token: every request is still in its context phase or queued when cut."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=2000)) as server:
        yield server


@pytest.fixture(scope="module")
def slow_start_gateways(slow_start_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory):
    yield from _gateways(slow_start_triton, tmp_path_factory.mktemp("slow-start"))


@pytest.mark.parametrize("mode", list(MODES))
def test_a_thousand_clients_hanging_up_at_once_leave_nothing_running(
    storm_triton: TritonServer, storm_gateways: dict[str, GatewayProcess], mode: str
) -> None:
    gateway = storm_gateways[mode]
    requests = [raw_request(gateway, index) for index in range(1000)]
    assert_storm_leaves_nothing(storm_triton, gateway, requests, hold_s=0.0)


@pytest.mark.parametrize("mode", list(MODES))
def test_two_hundred_streams_cut_before_their_first_token_leave_nothing_running(
    slow_start_triton: TritonServer, slow_start_gateways: dict[str, GatewayProcess], mode: str
) -> None:
    """The streams are inside Triton (preprocessing, queued, or in their 2 s context phase) when cut."""
    gateway = slow_start_gateways[mode]
    requests = [raw_request(gateway, index, stream=True) for index in range(200)]
    assert_storm_leaves_nothing(slow_start_triton, gateway, requests, hold_s=0.5)


def upstream_slots(gateway: GatewayProcess) -> tuple[float, float]:
    """The gateway's upstream slot limit and how many requests have waited for a slot so far, from /metrics."""
    samples = GAUGE.findall(httpx.get(f"{gateway.url}/metrics", timeout=10).text)
    limit = sum(float(value) for name, _, value in samples if name == "gateway_upstream_slots")
    waits = sum(float(value) for name, _, value in samples if name == "gateway_upstream_slot_wait_seconds_count")
    return limit, waits


@pytest.mark.parametrize("mode", list(MODES))
def test_the_slot_limit_is_twice_the_batch_triton_declares_and_requests_beyond_it_wait(
    storm_triton: TritonServer, storm_gateways: dict[str, GatewayProcess], mode: str
) -> None:
    gateway = storm_gateways[mode]
    limit, waits_before = upstream_slots(gateway)
    assert limit == 2 * DevStackOptions().max_batch_size  # read from tensorrt_llm's config as Triton serves it
    wait_until(lambda: triton_load(storm_triton).idle, 30, "Triton idle before the burst")
    extra = 12
    body = {"model": gateway.model, "max_tokens": 64, "ignore_eos": True}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=None)) as client:
            return await asyncio.gather(
                *(client.post(f"{gateway.v1}/completions", json=body | {"prompt": f"burst {index}"})
                  for index in range(int(limit) + extra))
            )  # fmt: skip

    assert [response.status_code for response in asyncio.run(burst())] == [200] * (int(limit) + extra)
    assert upstream_slots(gateway)[1] - waits_before >= extra
