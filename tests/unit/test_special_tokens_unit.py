"""Special tokens in an ensemble's text: whether its postprocessing keeps them, and the direct call that does.

Start-up reads the configs over a fake gRPC stub; a request that needs special tokens (Mistral's `[TOOL_CALLS]`)
then calls `tensorrt_llm` with token ids, the rest go to the ensemble. In the OpenAI layer, a request whose parser
reads such markers asks for them, and one the engine cannot serve so is a 400 that says what to change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from tritonclient.grpc import model_config_pb2, service_pb2

from gateway.app import create_app
from gateway.engine.base import EngineCapabilities, GenerationRequest
from gateway.engine.codecs import TextCodec, TokenCodec
from gateway.engine.special_tokens import marker_codec, postprocessing_model, skips_special_tokens
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import UpstreamError
from gateway.openai.served_model import ModelRegistry, ServedModel
from gateway.openai.tokens import ChatTemplate, TokenCounter
from tests.unit.fake_engine import FakeEngine
from tests.unit.test_detached_stream import FakeCall

TEXT = model_config_pb2.TYPE_STRING
INT = model_config_pb2.TYPE_INT32


def model_config(
    name: str, inputs: dict[str, int], outputs: dict[str, int], platform: str = "", **parameters: str
) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig(name=name, platform=platform)
    config.model_transaction_policy.decoupled = True
    for key, kind in inputs.items():
        config.input.add(name=key, data_type=kind)
    for key, kind in outputs.items():
        config.output.add(name=key, data_type=kind)
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def ensemble(postprocessing: str = "postprocessing") -> model_config_pb2.ModelConfig:
    config = model_config("ensemble", {"text_input": TEXT, "max_tokens": INT}, {"text_output": TEXT}, "ensemble")
    config.ensemble_scheduling.step.add(model_name="tensorrt_llm").output_map["output_ids"] = "_TOKENS"
    config.ensemble_scheduling.step.add(model_name=postprocessing).output_map["OUTPUT"] = "text_output"
    return config


ENGINE_INPUTS = ("input_ids", "input_lengths", "request_output_len", "end_id")
ENGINE = model_config(
    "tensorrt_llm",
    dict.fromkeys(ENGINE_INPUTS, INT) | {"streaming": model_config_pb2.TYPE_BOOL},
    {"output_ids": INT, "sequence_length": INT},
)


@pytest.mark.parametrize(("value", "skips"), [(None, True), ("${skip_special_tokens}", True), ("true", True),
                                              ("False", False), ("0", False), ("no", False)])  # fmt: skip
def test_postprocessing_skips_special_tokens_unless_told_not_to(value: str | None, skips: bool) -> None:
    extra = {} if value is None else {"skip_special_tokens": value}
    assert skips_special_tokens(model_config("postprocessing", {}, {}, **extra)) is skips


def test_the_postprocessing_is_the_step_that_writes_the_text_or_nvidias_for_a_bls() -> None:
    assert postprocessing_model(ensemble("my_detokenizer")) == "my_detokenizer"
    assert postprocessing_model(model_config("tensorrt_llm_bls", {}, {})) == "postprocessing"


def test_the_direct_codec_needs_an_engine_model_that_takes_token_ids(tokenizer: Any) -> None:
    codec, why_not = marker_codec(ENGINE, tokenizer)
    assert isinstance(codec, TokenCodec) and not why_not
    codec, why_not = marker_codec(ensemble(), tokenizer)
    assert codec is None and "token ids" in why_not
    coupled = model_config_pb2.ModelConfig()
    coupled.CopyFrom(ENGINE)
    coupled.model_transaction_policy.decoupled = False
    codec, why_not = marker_codec(coupled, tokenizer)
    assert codec is None and "decoupled" in why_not


class FakeStub:
    """ServerMetadata and ModelConfig of a fake Triton: the configs it has by name."""

    def __init__(self, *configs: model_config_pb2.ModelConfig) -> None:
        self.configs = {config.name: config for config in configs}

    async def ServerMetadata(self, request: Any, timeout: float) -> Any:
        return service_pb2.ServerMetadataResponse(version="2.51.0")

    async def ModelConfig(self, request: Any, timeout: float) -> Any:
        if request.name not in self.configs:
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())
        return service_pb2.ModelConfigResponse(config=self.configs[request.name])


async def discovered(tokenizer: Any, *configs: model_config_pb2.ModelConfig, engine_model: str = "tensorrt_llm"):
    engine = TritonEngine(TritonEngineConfig(url="fake:1", engine_model=engine_model), tokenizer)
    engine._stub = FakeStub(*configs)  # type: ignore[assignment]
    await engine._discover()
    return engine


async def first_call_model(engine: TritonEngine, keep: bool) -> str:
    """The model that a request's Triton call goes to."""
    sent: list[bytes] = []
    call = FakeCall()

    def stream_infer(message: bytes, **_: Any) -> FakeCall:
        sent.append(message)
        return call

    engine._stream_infer = stream_infer  # type: ignore[assignment]
    generation = engine.generate(GenerationRequest("r", "Hi", 4, stream=True, keep_special_tokens=keep))
    call.responses.put_nowait(None)  # the fake call ends without a final response
    with pytest.raises(UpstreamError):
        await anext(generation)
    return service_pb2.ModelInferRequest.FromString(sent[0]).model_name


async def test_requests_that_need_special_tokens_call_the_engine_model_when_the_postprocessing_drops_them(
    tokenizer: Any,
) -> None:
    engine = await discovered(tokenizer, ensemble(), ENGINE, model_config("postprocessing", {}, {}))
    capabilities = engine.capabilities()
    assert capabilities is not None and capabilities.special_tokens and capabilities.mode == "ensemble"
    assert await first_call_model(engine, keep=True) == "tensorrt_llm"
    assert await first_call_model(engine, keep=False) == "ensemble"


async def test_a_postprocessing_that_keeps_special_tokens_serves_every_request(tokenizer: Any) -> None:
    keeping = model_config("postprocessing", {}, {}, skip_special_tokens="false")
    engine = await discovered(tokenizer, ensemble(), ENGINE, keeping)
    assert isinstance(engine._codec, TextCodec) and engine._marker_codec is None
    capabilities = engine.capabilities()
    assert capabilities is not None and capabilities.special_tokens
    assert await first_call_model(engine, keep=True) == "ensemble"


async def test_without_an_engine_model_to_call_special_tokens_cannot_be_kept(tokenizer: Any) -> None:
    engine = await discovered(tokenizer, ensemble(), model_config("postprocessing", {}, {}), engine_model="nope")
    capabilities = engine.capabilities()
    assert capabilities is not None and not capabilities.special_tokens


# --- the OpenAI layer ------------------------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CHAT = "/v1/chat/completions"


@pytest.fixture
async def mistral_like(fake_engine: FakeEngine, tokenizer: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a Mistral-like model: its tool parser's marker is a special token of its tokenizer."""
    model = ServedModel(
        name="trtllm-dev",
        engine=fake_engine,
        chat_template=ChatTemplate(tokenizer),
        counter=TokenCounter(tokenizer),
        default_max_tokens=16,
        max_tokens_limit=1000,
        tool_parser="mistral",
        special_markers=frozenset({"[TOOL_CALLS]"}),
    )
    fake_engine.pieces = ['[TOOL_CALLS][{"name": "get_weather", "arguments": {}}]']
    transport = httpx.ASGITransport(app=create_app(ModelRegistry([model])))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "trtllm-dev", "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER], **extra}


async def test_a_request_whose_parser_reads_special_tokens_asks_the_engine_to_keep_them(
    mistral_like: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    client = mistral_like
    fake_engine.capable = EngineCapabilities("ensemble", special_tokens=True, guided_decoding=True)
    reply = (await client.post(CHAT, json=body())).json()
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert fake_engine.requests[-1].keep_special_tokens
    for no_markers_read in ({"tool_choice": "none"}, {"tool_choice": "required"}, {"tools": None}):
        assert (await client.post(CHAT, json=body(**no_markers_read))).status_code == 200
        assert not fake_engine.requests[-1].keep_special_tokens, no_markers_read


async def test_an_engine_that_cannot_keep_them_refuses_such_requests_saying_what_to_change(
    mistral_like: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    client = mistral_like
    fake_engine.capable = EngineCapabilities("ensemble", special_tokens=False)
    response = await client.post(CHAT, json=body())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "tools" and "[TOOL_CALLS]" in error["message"]
    assert "skip_special_tokens" in error["message"] and "tensorrt_llm" in error["message"]
    assert not fake_engine.requests
    assert (await client.post(CHAT, json=body(tool_choice="none"))).status_code == 200
