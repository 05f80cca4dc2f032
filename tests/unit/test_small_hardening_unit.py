"""Issue 26's smaller items: UTF-8 API keys, FP32 sampling values, /version without addresses, a hung upstream's
readiness (the e2e test test_hung_replica.py measures it against a SIGSTOPped Triton)."""

from __future__ import annotations

import asyncio
import math

import grpc
import httpx
import pytest
from tritonclient.grpc import model_config_pb2

from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import GenerationRequest, SamplingParams
from gateway.engine.call_guard import CallGuard
from gateway.engine.tensors import ModelInterface, RequestBuilder, add_sampling_inputs
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import InvalidRequestError

KEY = "clé-ключ-鍵"
BODY = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys=f"sk-ascii,{KEY}")


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"Bearer " + KEY.encode(), 200),  # what clients send: UTF-8
        (b"Bearer " + KEY.encode()[:-1] + b"X", 401),
        (b"Bearer " + "clé".encode("latin-1"), 401),
        (b"Bearer sk-ascii", 200),
    ],
)
async def test_a_non_ascii_key_sent_as_utf8_matches(client: httpx.AsyncClient, header: bytes, status: int) -> None:
    response = await client.post("/v1/chat/completions", json=BODY, headers={"authorization": header})
    assert response.status_code == status


async def test_version_names_no_upstream_address(client: httpx.AsyncClient) -> None:
    response = await client.get("/version", headers={"authorization": "Bearer sk-ascii"})
    served = response.json()["models"][DEV_MODEL_NAME]
    assert "upstream" not in served and set(served) == {"triton_model", "mode", "triton_version"}


def fp32_interface() -> ModelInterface:
    config = model_config_pb2.ModelConfig(name="ensemble")
    for name in ("temperature", "runtime_top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"):
        config.input.add(name=name, data_type=model_config_pb2.TYPE_FP32, dims=[1])
    return ModelInterface.from_config(config)


def build(**sampling: float) -> RequestBuilder:
    builder = RequestBuilder(fp32_interface(), "r")
    add_sampling_inputs(builder, GenerationRequest("r", "p", 4, False, SamplingParams(**sampling)))  # type: ignore[arg-type]
    return builder


@pytest.mark.parametrize(
    "field", ["temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"]
)
@pytest.mark.parametrize("value", [1e-320, 5e-39, -1e-40, 1e39, math.inf, math.nan])
def test_floats_that_fp32_would_flush_or_overflow_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        build(**{field: value})
    assert refused.value.param == field and refused.value.status == 400
    assert "32-bit float" in refused.value.message


@pytest.mark.parametrize("value", [0.0, -0.0, 1.2e-38, 1e-30, 0.7, -2.0, 1e38])
def test_floats_fp32_holds_pass(value: float) -> None:
    builder = build(repetition_penalty=value)
    assert [i.name for i in builder.message.inputs] == ["repetition_penalty"]


class SilentStub:
    """A Triton that accepted the connection and answers nothing (SIGSTOPped): each probe runs out its deadline."""

    def __init__(self) -> None:
        self.probes = 0

    async def ServerReady(self, _request: object, timeout: float) -> None:
        self.probes += 1
        await asyncio.sleep(timeout)
        raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata())


async def test_an_unanswered_probe_is_confirmed_at_once_then_the_upstream_is_not_ready() -> None:
    engine = TritonEngine(TritonEngineConfig(url="hung:1", health_interval_s=60, health_timeout_s=0.1))
    stub = SilentStub()
    engine._stub = stub  # type: ignore[assignment]
    engine._ready = True
    await engine._refresh()  # the probe that found the server hung
    assert engine.info().ready  # one miss could be a blip
    watcher = asyncio.create_task(engine._watch())
    await asyncio.sleep(0.3)  # far less than the 60 s interval: the second probe did not wait for it
    watcher.cancel()
    assert stub.probes == 2 and not engine.info().ready


async def test_a_slow_probe_while_generations_receive_tokens_is_busy_not_hung() -> None:
    engine = TritonEngine(TritonEngineConfig(url="busy:1", health_interval_s=60, health_timeout_s=0.1))
    stub = SilentStub()
    engine._stub = stub  # type: ignore[assignment]
    engine._ready = True
    guard = CallGuard(object(), None, None)
    engine._active.add(guard)

    async def tokens() -> None:
        while True:
            guard.touch()
            await asyncio.sleep(0.02)

    streaming = asyncio.create_task(tokens())
    for _ in range(3):
        await engine._refresh()
    assert engine.info().ready and engine._failed_polls == 0
    streaming.cancel()
    await asyncio.sleep(0.15)  # the stream has gone silent too: now the misses count
    await engine._refresh()
    await engine._refresh()
    assert not engine.info().ready
    guard.close()
