"""An in-process stand-in for Triton's gRPC channel, so that `bench.app_cost --upstream MODE` runs the real
TritonEngine (discovery, codec, reader task, call guard, pool) with neither a server nor grpc's threads.

It answers readiness, metadata and `ModelConfig` with the dev repository's own configs (`triton_repo/dev`
rendered as the dev stack renders it) and streams `max_tokens` responses per `ModelStreamInfer` call (one response
with all of them when the request asks for no stream, as Triton answers), serialized once and parsed per read as
grpc does. Each response is read after one turn of the event loop (as a response
that arrives on its own would be), so the engine's per-response path runs once per token, not once per batch.
Requests come as calls of their own or on long-lived shared streams, as the engine makes them.
"""

from __future__ import annotations

import asyncio
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2, service_pb2

from gateway.devstack.dev_stack import DevStackOptions
from gateway.devstack.repository import render_model_repository, triton_repo_root

FINAL = "triton_final_response"


def dev_model_configs(model_dir: Path) -> dict[str, model_config_pb2.ModelConfig]:
    """The dev repository's model configs, rendered with the dev stack's values for the synthetic engine."""
    values = DevStackOptions(engine="synthetic").placeholder_values(model_dir)
    with tempfile.TemporaryDirectory(prefix="fake-triton-") as work:
        repository = render_model_repository(triton_repo_root() / "dev", Path(work) / "repo", values)
        configs = {
            path.parent.name: text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
            for path in repository.glob("*/config.pbtxt")
        }
    # Triton derives an ensemble's decoupled mode from its steps and reports it in the config it serves.
    configs["ensemble"].model_transaction_policy.decoupled = True
    return configs


def _tensor_int(request: service_pb2.ModelInferRequest, name: str) -> int | None:
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=False):
        if tensor.name == name:
            code = {"INT32": "i", "INT64": "q", "UINT64": "Q", "BOOL": "?"}[tensor.datatype]
            return int(struct.unpack_from("<" + code, raw)[0])
    return None


class _StreamCall:
    """One ModelStreamInfer call: its responses (bytes), each parsed when read, after one loop turn."""

    def __init__(self, responses: list[bytes], deserialize: Callable[[bytes], Any]) -> None:
        self._responses = responses
        self._deserialize = deserialize
        self._cancelled = False

    def cancel(self) -> bool:
        self._cancelled = True
        return True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._read()

    async def _read(self) -> AsyncIterator[Any]:
        for raw in self._responses:
            await asyncio.sleep(0)
            if self._cancelled:
                raise asyncio.CancelledError
            yield self._deserialize(raw)


class _SharedStreamCall:
    """A long-lived ModelStreamInfer call: each request written adds its responses, under its id, to the one
    stream; each is parsed when read, after one loop turn."""

    def __init__(
        self, responses: Callable[[service_pb2.ModelInferRequest], list[bytes]], deserialize: Callable[[bytes], Any]
    ) -> None:
        self._responses = responses
        self._deserialize = deserialize
        self._pending: list[bytes] = []
        self._arrived: asyncio.Future[None] | None = None
        self._cancelled = False

    async def write(self, payload: bytes) -> None:
        request = service_pb2.ModelInferRequest.FromString(payload)
        # A serialized message followed by another is parsed as their merge: the id joins each cached response.
        tagged = service_pb2.ModelStreamInferResponse()
        tagged.infer_response.id = request.id
        prefix = tagged.SerializeToString()
        self._pending += [prefix + raw for raw in self._responses(request)]
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def cancel(self) -> bool:
        self._cancelled = True
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)
        return True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._read()

    async def _read(self) -> AsyncIterator[Any]:
        while not self._cancelled:
            if not self._pending:
                self._arrived = asyncio.get_running_loop().create_future()
                await self._arrived
                continue
            await asyncio.sleep(0)
            if self._pending:
                yield self._deserialize(self._pending.pop(0))
        raise asyncio.CancelledError


class FakeTritonChannel:
    """What TritonEngine calls on a `grpc.aio.Channel`, answered from `configs` and `tokens` (id, text) pairs."""

    def __init__(self, configs: dict[str, model_config_pb2.ModelConfig], tokens: list[tuple[int, str]]) -> None:
        self._configs = configs
        self._tokens = tokens
        self._cache: dict[tuple[bool, frozenset[str], int, bool, bool], bytes] = {}
        self._whole_cache: dict[tuple[bool, frozenset[str], int], bytes] = {}

    def unary_unary(self, method: str, *_: Any, **__: Any) -> Callable[..., Any]:
        """Readiness, metadata and config RPCs."""
        name = method.rsplit("/", 1)[-1]

        async def call(request: Any, **_: Any) -> Any:
            if name == "ServerReady":
                return service_pb2.ServerReadyResponse(ready=True)
            if name == "ModelReady":
                return service_pb2.ModelReadyResponse(ready=request.name in self._configs)
            if name == "ServerMetadata":
                return service_pb2.ServerMetadataResponse(name="fake", version="2.51.0")
            if name == "ModelConfig" and request.name in self._configs:
                return service_pb2.ModelConfigResponse(config=self._configs[request.name])
            metadata = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, metadata, metadata, f"no {request.name}")

        return call

    def stream_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Callable[[], _SharedStreamCall]:
        """ModelStreamInfer as a long-lived stream that the engine's requests share (engine/shared_streams.py); the
        generated stub's, which the engine does not call, is built the same way."""
        assert response_deserializer is not None
        return lambda: _SharedStreamCall(self._responses, response_deserializer)

    def unary_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None
    ) -> Callable[..., _StreamCall]:
        """ModelStreamInfer as the engine makes it: serialized request in, a stream of responses out."""
        assert response_deserializer is not None

        def call(payload: bytes, **_: Any) -> _StreamCall:
            request = service_pb2.ModelInferRequest.FromString(payload)
            return _StreamCall(self._responses(request), response_deserializer)

        return call

    async def close(self) -> None:
        """Nothing to release."""

    def _responses(self, request: service_pb2.ModelInferRequest) -> list[bytes]:
        if _tensor_int(request, "stop"):
            return [_response([], final=True)]
        count = _tensor_int(request, "max_tokens") or _tensor_int(request, "request_output_len") or 16
        direct = request.model_name == "tensorrt_llm"
        wanted = frozenset(output.name for output in request.outputs)
        if not (_tensor_int(request, "streaming") if direct else _tensor_int(request, "stream")):
            whole = self._whole_cache.get((direct, wanted, count)) or self._whole(direct, wanted, count)
            return [self._whole_cache.setdefault((direct, wanted, count), whole)]
        # Serialized once per distinct response (not per call): building them is no part of what is measured.
        return [self._serialized(direct, wanted, index, count) for index in range(count)]

    def _serialized(self, direct: bool, wanted: frozenset[str], index: int, count: int) -> bytes:
        key = (direct, wanted, index % len(self._tokens), index == 0, index == count - 1)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        token_id, text = self._tokens[key[2]]
        outputs: list[tuple[str, str, bytes]] = []
        if direct:
            outputs += [("output_ids", "INT32", struct.pack("<i", token_id))]
            outputs += [("sequence_length", "INT32", struct.pack("<i", 1))]
        else:
            data = text.encode()
            outputs += [("text_output", "BYTES", struct.pack("<I", len(data)) + data)]
            if "num_output_tokens" in wanted:
                outputs += [("num_output_tokens", "INT32", struct.pack("<i", 1))]
            if "num_input_tokens" in wanted and index == 0:
                outputs += [("num_input_tokens", "INT32", struct.pack("<i", 8))]
        cached = self._cache[key] = _response(outputs, final=index == count - 1)
        return cached

    def _whole(self, direct: bool, wanted: frozenset[str], count: int) -> bytes:
        """The one response of a non-streamed request: all `count` tokens at once."""
        tokens = [self._tokens[index % len(self._tokens)] for index in range(count)]
        if direct:
            ids = struct.pack(f"<{count}i", *(token_id for token_id, _ in tokens))
            lengths = struct.pack("<i", count)
            outputs = [("output_ids", "INT32", ids), ("sequence_length", "INT32", lengths)]
            return _response(outputs, final=True, shapes={"output_ids": [1, 1, count]})
        data = "".join(text for _, text in tokens).encode()
        outputs = [("text_output", "BYTES", struct.pack("<I", len(data)) + data)]
        if "num_output_tokens" in wanted:
            outputs += [("num_output_tokens", "INT32", struct.pack("<i", count))]
        if "num_input_tokens" in wanted:
            outputs += [("num_input_tokens", "INT32", struct.pack("<i", 8))]
        return _response(outputs, final=True)


def _response(outputs: list[tuple[str, str, bytes]], final: bool, shapes: dict[str, list[int]] | None = None) -> bytes:
    message = service_pb2.ModelStreamInferResponse()
    infer = message.infer_response
    for name, datatype, raw in outputs:
        infer.outputs.add(name=name, datatype=datatype, shape=(shapes or {}).get(name, [1, 1]))
        infer.raw_output_contents.append(raw)
    infer.parameters[FINAL].bool_param = final
    return message.SerializeToString()


@contextmanager
def fake_triton(model_dir: Path, tokens: list[tuple[int, str]]) -> Iterator[None]:
    """Every gRPC channel opened meanwhile is a FakeTritonChannel over the dev repository."""
    channel = FakeTritonChannel(dev_model_configs(model_dir), tokens)
    with mock.patch.object(grpc.aio, "insecure_channel", lambda *_, **__: channel):
        yield
