"""TritonEngine.generate over a fake gRPC call: responses that queue up while the consumer is busy become one delta."""

from __future__ import annotations

import asyncio
import struct

import pytest
from tritonclient.grpc import service_pb2

from gateway.engine.base import GenerationRequest
from gateway.engine.codecs import TextCodec
from gateway.engine.tensors import FINAL_RESPONSE_PARAMETER, ModelInterface
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import UpstreamError
from tests.unit.test_detached_stream import FakeCall

INTERFACE = ModelInterface(
    name="ensemble",
    inputs={"text_input": "BYTES", "max_tokens": "INT32", "stream": "BOOL"},
    outputs={"text_output": "BYTES", "num_output_tokens": "INT32"},
    decoupled=True,
)


def response(text: str, final: bool = False) -> service_pb2.ModelStreamInferResponse:
    message = service_pb2.ModelStreamInferResponse()
    infer = message.infer_response
    data = text.encode()
    infer.outputs.add(name="text_output", datatype="BYTES", shape=[1, 1])
    infer.raw_output_contents.append(struct.pack("<I", len(data)) + data)
    infer.outputs.add(name="num_output_tokens", datatype="INT32", shape=[1, 1])
    infer.raw_output_contents.append(struct.pack("<i", 1 if text else 0))
    infer.parameters[FINAL_RESPONSE_PARAMETER].bool_param = final
    return message


def engine_over(call: FakeCall) -> TritonEngine:
    engine = TritonEngine(TritonEngineConfig(url="fake:1"))
    engine._stream_infer = lambda message, **_: call  # type: ignore[assignment]
    engine._codec = TextCodec(INTERFACE, mode="ensemble", cumulative=False)
    return engine


async def test_responses_that_arrive_while_the_consumer_is_busy_are_sent_as_one_delta() -> None:
    call = FakeCall()
    deltas = engine_over(call).generate(GenerationRequest("r1", "prompt", max_tokens=16, stream=True))
    call.responses.put_nowait(response("Hel"))
    first = await anext(deltas)
    assert (first.text, first.completion_tokens) == ("Hel", 1)
    for piece in ("lo", ",", " wor"):
        call.responses.put_nowait(response(piece))
    await asyncio.sleep(0.01)  # the consumer is writing its previous chunk meanwhile
    second = await anext(deltas)
    assert (second.text, second.completion_tokens, second.finish_reason) == ("lo, wor", 3, None)
    call.responses.put_nowait(response("ld"))
    call.responses.put_nowait(response("", final=True))
    await asyncio.sleep(0.01)
    last = await anext(deltas)
    assert (last.text, last.completion_tokens, last.finish_reason) == ("ld", 1, "stop")
    assert await anext(deltas, None) is None
    assert not call.cancelled


async def test_an_upstream_error_after_queued_tokens_fails_the_stream() -> None:
    call = FakeCall()
    deltas = engine_over(call).generate(GenerationRequest("r2", "prompt", max_tokens=16, stream=True))
    call.responses.put_nowait(response("a"))
    broken = service_pb2.ModelStreamInferResponse(error_message="in ensemble 'ensemble', forward pass failed")
    call.responses.put_nowait(broken)
    await asyncio.sleep(0.01)
    with pytest.raises(UpstreamError, match="forward pass failed"):
        await anext(deltas)


async def test_the_call_is_given_the_serialized_request_not_the_message() -> None:
    """grpc.aio holds what a call is given until the call ends: bytes, not the larger protobuf message."""
    call = FakeCall()
    engine = engine_over(call)
    sent: list[object] = []

    def stream_infer(request: object, **_: object) -> FakeCall:
        sent.append(request)
        return call

    engine._stream_infer = stream_infer  # type: ignore[assignment]
    deltas = engine.generate(GenerationRequest("r9", "prompt", max_tokens=16, stream=True))
    call.responses.put_nowait(response("", final=True))
    assert (await anext(deltas)).finish_reason == "stop"
    (request,) = sent
    assert isinstance(request, bytes)
    assert service_pb2.ModelInferRequest.FromString(request).id == "r9"
