"""cached_tokens: asked for where the model declares it, read from kv_cache_reused_blocks, shown in usage."""

from __future__ import annotations

import struct

from tritonclient.grpc import service_pb2

from gateway.core.usage import Usage, request_usage
from gateway.engine.base import GenerationRequest
from gateway.engine.codecs import TextCodec
from gateway.engine.tensors import ModelInterface
from gateway.protocols.openai_shared import usage_json

INPUTS = {"text_input": "BYTES", "max_tokens": "INT32", "stream": "BOOL", "return_perf_metrics": "BOOL"}
OUTPUTS = {"text_output": "BYTES", "kv_cache_reused_blocks": "INT32"}


def response(reused_blocks: int) -> service_pb2.ModelInferResponse:
    message = service_pb2.ModelInferResponse()
    message.outputs.add(name="text_output", datatype="BYTES", shape=[1, 1])
    message.raw_output_contents.append(struct.pack("<I", 2) + b"hi")
    message.outputs.add(name="kv_cache_reused_blocks", datatype="INT32", shape=[1, 1])
    message.raw_output_contents.append(struct.pack("<i", reused_blocks))
    return message


def test_reused_blocks_are_asked_for_and_become_cached_tokens() -> None:
    codec = TextCodec(ModelInterface("ensemble", INPUTS, OUTPUTS, True), "ensemble", False, kv_block_size=32)
    message, decoder = codec.open(GenerationRequest("r", "prompt", 4, stream=True))
    assert "return_perf_metrics" in [i.name for i in message.inputs]
    assert [o.name for o in message.outputs] == ["text_output", "kv_cache_reused_blocks"]
    assert decoder.feed(response(3)).cached_tokens == 96


def test_models_without_perf_outputs_are_not_asked() -> None:
    inputs = {k: v for k, v in INPUTS.items() if k != "return_perf_metrics"}
    codec = TextCodec(ModelInterface("ensemble", inputs, OUTPUTS, True), "ensemble", False)
    message, _ = codec.open(GenerationRequest("r", "prompt", 4, stream=True))
    assert [o.name for o in message.outputs] == ["text_output"]


def test_usage_shows_cached_tokens_once_per_prompt() -> None:
    assert "prompt_tokens_details" not in usage_json(Usage(10, 2))
    assert usage_json(Usage(10, 2, 8))["prompt_tokens_details"] == {"cached_tokens": 8}
    two_choices_of_one_prompt = [(0, Usage(10, 2, 8)), (0, Usage(10, 3, 8)), (1, Usage(5, 1, 0))]
    assert request_usage(two_choices_of_one_prompt) == Usage(15, 6, 8)
    assert request_usage([(0, Usage(10, 2))]).cached_tokens is None
