"""The BLS's gRPC route to tensorrt_llm (triton_repo/trtllm/tensorrt_llm_bls/1/bls_grpc.py): tensors in Triton's
raw format, and responses routed by request id over one shared stream. Against the real Triton: the e2e BLS
tests, whose dev stack takes this route."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from gateway.devstack.repository import triton_repo_root

sys.path.insert(0, str(triton_repo_root() / "trtllm" / "tensorrt_llm_bls" / "1"))
import bls_grpc


def response(request_id: str, final: bool, *arrays: tuple[str, str, np.ndarray]) -> service_pb2.ModelInferResponse:
    message = service_pb2.ModelInferResponse(id=request_id)
    message.parameters[bls_grpc.FINAL].bool_param = final
    for name, datatype, array in arrays:
        message.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        message.raw_output_contents.append(bls_grpc.raw_bytes(array, datatype))
    return message


def test_a_request_carries_its_inputs_raw_its_id_outputs_and_asks_for_the_final_response() -> None:
    inputs = {
        "input_ids": np.array([[1, 2, 3]], np.int32),
        "stop": np.ones((1, 1), np.bool_),
        "guided_decoding_guide": np.array([[b"{}"]], np.object_),
    }
    request = bls_grpc.encode_request("tensorrt_llm", inputs, ["output_ids"], "req-1")
    assert (request.model_name, request.id) == ("tensorrt_llm", "req-1")
    assert request.parameters[bls_grpc.EMPTY_FINAL].bool_param
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [
        ("input_ids", "INT32", [1, 3]),
        ("stop", "BOOL", [1, 1]),
        ("guided_decoding_guide", "BYTES", [1, 1]),
    ]
    assert request.raw_input_contents[0] == np.array([1, 2, 3], np.int32).tobytes()
    assert request.raw_input_contents[2] == len(b"{}").to_bytes(4, "little") + b"{}"
    assert [o.name for o in request.outputs] == ["output_ids"]


def test_outputs_decode_to_their_shapes_and_bf16_stays_as_its_bits() -> None:
    ids = np.array([[[5, 6, 7]]], np.int32)
    bits = np.array([[0x3F80, 0xC000]], np.uint16)  # 1.0 and -2.0 in bfloat16
    texts = np.array([b"a", b"bc"], np.object_)
    decoded = bls_grpc.decode_outputs(
        response("r", False, ("output_ids", "INT32", ids), ("logits", "BF16", bits), ("text", "BYTES", texts))
    )
    assert np.array_equal(decoded["output_ids"].array, ids)
    assert decoded["logits"].datatype == "BF16"
    assert np.array_equal(decoded["logits"].array, bits)
    assert decoded["text"].array.tolist() == [b"a", b"bc"]
    assert bls_grpc.decode_outputs(response("r", True)) == {}


def test_an_array_of_a_type_triton_lacks_is_refused_by_name() -> None:
    with pytest.raises(bls_grpc.StreamError, match="input when: numpy dtype"):
        bls_grpc.encode_request("m", {"when": np.array(["2026-01-01"], "datetime64[D]")}, [], "r")


class FakeService:
    """ModelStreamInfer answering each request it reads with the responses scripted for its id, from a thread
    (like a server), on calls that can be ended from the test."""

    def __init__(self, script: dict[str, list[service_pb2.ModelStreamInferResponse]]) -> None:
        self.script = script
        self.calls: list[FakeCall] = []

    def ModelStreamInfer(self, requests: Iterator[service_pb2.ModelInferRequest]) -> FakeCall:
        call = FakeCall(requests, self.script)
        self.calls.append(call)
        return call


class FakeCall:
    def __init__(self, requests: Iterator[service_pb2.ModelInferRequest], script: dict) -> None:
        self.responses: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.seen: list[str] = []
        self.cancelled = False
        threading.Thread(target=self._serve, args=(requests, script), daemon=True).start()

    def _serve(self, requests: Iterator[service_pb2.ModelInferRequest], script: dict) -> None:
        for request in requests:
            self.seen.append(request.id)
            for message in script.get(request.id, []):
                self.responses.put(message)

    def end(self) -> None:
        self.responses.put(None)

    def cancel(self) -> None:
        self.cancelled = True
        self.end()

    def __iter__(self) -> Iterator[object]:
        return iter(self.responses.get, None)


def streamed(request_id: str, final: bool, error: str = "") -> service_pb2.ModelStreamInferResponse:
    return service_pb2.ModelStreamInferResponse(error_message=error, infer_response=response(request_id, final))


def streams_with(service: FakeService) -> bls_grpc.TritonStreams:
    streams = bls_grpc.TritonStreams("127.0.0.1:1")
    streams.service = service  # type: ignore[assignment]
    return streams


def request(request_id: str) -> service_pb2.ModelInferRequest:
    return bls_grpc.encode_request("tensorrt_llm", {}, [], request_id)


def test_requests_share_one_stream_and_each_gets_its_own_responses_up_to_the_final_one() -> None:
    service = FakeService(
        {
            "a": [streamed("b", False), streamed("a", False), streamed("a", True), streamed("a", False)],
            "b": [streamed("b", True)],
        }
    )
    streams = streams_with(service)
    first, second = streams.stream(request("a")), streams.stream(request("b"))
    assert [bls_grpc.is_final(r) for r in first] == [False, True]  # b's response and a's late one are not a's
    assert [bls_grpc.is_final(r) for r in second] == [True]
    assert len(service.calls) == 1 and service.calls[0].seen == ["a", "b"]


def test_an_id_already_open_gets_a_stream_of_its_own_which_closes_with_it() -> None:
    service = FakeService({"a": [streamed("a", False)]})
    streams = streams_with(service)
    generation = streams.stream(request("a"))
    assert not bls_grpc.is_final(next(generation))  # "a" is open on the shared stream
    service.script["a"] = [streamed("a", True)]  # what the stop request with the same id gets
    assert [bls_grpc.is_final(r) for r in streams.stream(request("a"))] == [True]
    shared, own = service.calls
    assert (shared.seen, own.seen) == (["a"], ["a"])
    assert own.cancelled and not shared.cancelled
    assert streams.shared is not None and streams.shared.holds("a")


def test_an_error_response_or_a_broken_stream_raises_and_the_next_request_opens_a_new_stream() -> None:
    service = FakeService({"bad": [streamed("bad", False, error="tensorrt_llm: out of slots")]})
    streams = streams_with(service)
    with pytest.raises(bls_grpc.StreamError, match="out of slots"):
        list(streams.stream(request("bad")))
    outcome: list[BaseException] = []

    def wait_for_an_answer() -> None:
        try:
            list(streams.stream(request("waits")))
        except bls_grpc.StreamError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=wait_for_an_answer, daemon=True)
    reader.start()
    while "waits" not in service.calls[0].seen:
        threading.Event().wait(0.01)
    service.calls[0].end()  # the server ends the stream with a request still open
    reader.join(5)
    assert [str(exc) for exc in outcome] == ["gRPC stream to 127.0.0.1:1 ended"]
    service.script["next"] = [streamed("next", True)]
    assert len(list(streams.stream(request("next")))) == 1
    assert len(service.calls) == 2
