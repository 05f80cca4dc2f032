"""Streamed calls to a model of this Triton over its own gRPC endpoint (the BLS parameter `engine_grpc_url`).

The BLS sends its tensorrt_llm requests (generations and stops) this way when the parameter is set, instead of
the Python backend's `exec(decoupled=True)`, which can deadlock a stub whose threads stream at once
(triton_repo/README.md, "Known defects"). Requests share one long-lived gRPC stream, their responses told apart
by request id (as the gateway's own engine client does). Needs `tritonclient[grpc]` where Triton runs. Nothing
here touches the Python backend: tensors are numpy arrays, BF16 ones as their uint16 bits (numpy has no bfloat16).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor, triton_to_np_dtype

UNLIMITED = -1
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", UNLIMITED),
    ("grpc.max_receive_message_length", UNLIMITED),
]
# Triton sends the stream's end as an empty response flagged final only when asked to (TRITON_INTERFACE.md).
EMPTY_FINAL = "triton_enable_empty_final_response"
FINAL = "triton_final_response"
CLOSE = object()  # ends a shared stream's writes


class StreamError(Exception):
    """Triton answered a streamed request with an error, or the stream broke."""


@dataclass(frozen=True)
class OutputArray:
    """One output of a response: Triton's datatype and the values (BF16: uint16 bits)."""

    datatype: str
    array: np.ndarray


def encode_request(
    model: str, inputs: Mapping[str, np.ndarray], outputs: list[str], request_id: str
) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest carrying `inputs` as raw contents, asking for `outputs` and for a final response."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    request.parameters[EMPTY_FINAL].bool_param = True
    for name, array in inputs.items():
        datatype = np_to_triton_dtype(array.dtype)
        if datatype is None:
            raise StreamError(f"input {name}: numpy dtype {array.dtype} has no Triton datatype")
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        request.raw_input_contents.append(raw_bytes(array, datatype))
    for name in outputs:
        request.outputs.add(name=name)
    return request


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The tensor's contents as Triton's raw format has them (BYTES: 4-byte length before each element)."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array).tobytes()
    serialized = serialize_byte_tensor(array)
    return b"" if serialized.size == 0 else bytes(serialized.item())


def decode_outputs(response: service_pb2.ModelInferResponse) -> dict[str, OutputArray]:
    """The outputs of a response by name (none for the empty final one)."""
    decoded = {}
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        shape = list(output.shape)
        if output.datatype == "BYTES":
            array = deserialize_bytes_tensor(raw)
        elif output.datatype == "BF16":
            array = np.frombuffer(raw, dtype=np.uint16)
        else:
            array = np.frombuffer(raw, dtype=triton_to_np_dtype(output.datatype))
        decoded[output.name] = OutputArray(output.datatype, array.reshape(shape))
    return decoded


def is_final(response: service_pb2.ModelInferResponse) -> bool:
    """Whether this is the last response of its request."""
    return FINAL in response.parameters and response.parameters[FINAL].bool_param


class SharedStream:
    """One long-lived ModelStreamInfer call: requests are written from a queue, and a reader thread hands each
    response to the queue of the request whose id it carries (Triton's stream handler puts the id on every
    response, errors included). A call per request would cost each request a stream's set-up and a thread."""

    def __init__(self, service: service_pb2_grpc.GRPCInferenceServiceStub, url: str) -> None:
        self.url = url
        self.error: StreamError | None = None  # what ended the stream
        self.routes: dict[str, queue.SimpleQueue[Any]] = {}
        self.lock = threading.Lock()
        self.writes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.call = service.ModelStreamInfer(iter(self.writes.get, CLOSE))
        threading.Thread(target=self._read, name="bls-engine-stream", daemon=True).start()

    @property
    def broken(self) -> bool:
        """Whether the stream has ended (its requests were told why)."""
        return self.error is not None

    def holds(self, request_id: str) -> bool:
        """Whether a request with this id is open on the stream."""
        return request_id in self.routes

    def submit(self, request: service_pb2.ModelInferRequest) -> queue.SimpleQueue[Any]:
        """Write the request; its responses (or the StreamError that ended the stream) arrive in the queue."""
        responses: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self.lock:
            if self.error is not None:
                raise StreamError(str(self.error))  # a fresh one: each request's thread raises its own
            self.routes[request.id] = responses
        self.writes.put(request)
        return responses

    def forget(self, request_id: str) -> None:
        """The request is over here: its id's responses are dropped from now on."""
        self.routes.pop(request_id, None)

    def close(self) -> None:
        """End the stream; open requests get a StreamError."""
        self.writes.put(CLOSE)
        self.call.cancel()

    def _read(self) -> None:
        error = StreamError(f"gRPC stream to {self.url} ended")
        try:
            for message in self.call:
                responses = self.routes.get(message.infer_response.id)
                if responses is not None:
                    responses.put(message)
        except grpc.RpcError as exc:
            error = StreamError(f"gRPC stream to {self.url}: {exc.code().name}: {exc.details()}")
        with self.lock:
            self.error = error
            routes, self.routes = self.routes, {}
        for responses in routes.values():
            responses.put(error)
        self.writes.put(CLOSE)  # lets gRPC's thread that writes the requests end


class TritonStreams:
    """Streamed requests to Triton's gRPC endpoint over one shared stream (opened again after it breaks); a
    request whose id is already open there gets a stream of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.channel = grpc.insecure_channel(url, options=CHANNEL_OPTIONS)
        self.service = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.shared: SharedStream | None = None
        self.lock = threading.Lock()

    def stream(self, request: service_pb2.ModelInferRequest) -> Iterator[service_pb2.ModelInferResponse]:
        """Send one request and yield its responses up to and with the final one, raising StreamError on an
        error response or a broken stream. Leaving early only stops the delivery: the request goes on upstream."""
        with self.lock:
            if self.shared is None or self.shared.broken:
                self.shared = SharedStream(self.service, self.url)
            shared = self.shared
            if shared.holds(request.id):
                shared = SharedStream(self.service, self.url)  # for this request alone
            responses = shared.submit(request)
        try:
            while True:
                message = responses.get()
                if isinstance(message, StreamError):
                    raise StreamError(str(message))
                if message.error_message:
                    raise StreamError(message.error_message)
                yield message.infer_response
                if is_final(message.infer_response):
                    return
        finally:
            shared.forget(request.id)
            if shared is not self.shared:
                shared.close()

    def close(self) -> None:
        """Close the channel (its streams end)."""
        self.channel.close()
