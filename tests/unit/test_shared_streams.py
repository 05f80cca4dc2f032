"""engine/shared_streams.py over fake long-lived calls: each request gets its own responses and its own end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
import pytest
from tritonclient.grpc import service_pb2

from gateway.engine.base import Delta, GenerationRequest
from gateway.engine.codecs import TextCodec
from gateway.engine.detached_stream import DetachedStream
from gateway.engine.shared_streams import SharedCall, SharedStreams
from gateway.engine.stop_requests import RETRY_S, StopRequests
from gateway.engine.tensors import FINAL_RESPONSE_PARAMETER
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import UpstreamError
from tests.unit.test_detached_stream import FakeCall
from tests.unit.test_triton_engine_unit import INTERFACE
from tests.unit.test_triton_engine_unit import response as engine_response
from tests.unit.test_upstream_stops import STOP_TARGET

END = None


class FakeStreamCall:
    """A stream-stream call: records the requests written, yields what the test puts in, fails when told."""

    def __init__(self) -> None:
        self.written: list[service_pb2.ModelInferRequest] = []
        self.replies: asyncio.Queue[service_pb2.ModelStreamInferResponse | BaseException | None] = asyncio.Queue()
        self.cancelled = False
        self.write_error: BaseException | None = None

    async def write(self, data: bytes) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.written.append(service_pb2.ModelInferRequest.FromString(data))

    async def __aiter__(self) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        while True:
            item = await self.replies.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> bool:
        self.cancelled = True
        self.replies.put_nowait(END)
        return True


def response(
    request_id: str, text: str = "", final: bool = False, error: str = ""
) -> service_pb2.ModelStreamInferResponse:
    reply = service_pb2.ModelStreamInferResponse(error_message=error)
    reply.infer_response.id = request_id
    reply.infer_response.model_name = text
    reply.infer_response.parameters[FINAL_RESPONSE_PARAMETER].bool_param = final
    return reply


def request(request_id: str) -> bytes:
    return service_pb2.ModelInferRequest(model_name="ensemble", id=request_id).SerializeToString()


class Streams:
    """SharedStreams over fake calls, with the calls it opened."""

    def __init__(self, count: int) -> None:
        self.calls: list[FakeStreamCall] = []
        self.shared = SharedStreams(self._open, count)

    def _open(self) -> FakeStreamCall:
        self.calls.append(FakeStreamCall())
        return self.calls[-1]


async def read_all(call: SharedCall) -> list[str]:
    """What the engine's reader (a DetachedStream) gets from the call, to its end."""
    return [reply.infer_response.model_name async for batch in DetachedStream(call, set()) for reply in batch]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_interleaved_responses_reach_their_own_request_and_the_final_one_ends_it() -> None:
    streams = Streams(2)
    first, second, third = (streams.shared.call(name, request(name), None) for name in ("a", "b", "c"))
    readers = [asyncio.create_task(read_all(call)) for call in (first, second, third)]
    await settle()
    assert [[r.id for r in call.written] for call in streams.calls] == [["a", "c"], ["b"]]  # in turn
    one, two = streams.calls
    for call, reply in (
        (two, response("b", "b1")),
        (one, response("c", "c1")),
        (one, response("a", "a1")),
        (one, response("gone", "dropped")),  # a request that ended already: nobody is told
        (two, response("b", "b2", final=True)),
        (one, response("a", "a2", final=True)),
        (one, response("c", "c2", final=True)),
    ):
        call.replies.put_nowait(reply)
    assert await asyncio.gather(*readers) == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]
    assert not streams.shared.holds("a") and not streams.shared.holds("b")  # ended requests are forgotten
    assert not one.cancelled  # the streams stay open for the next requests
    streams.shared.close()


async def test_an_error_response_is_the_request_s_last() -> None:
    streams = Streams(1)
    call = streams.shared.call("a", request("a"), None)
    reader = asyncio.create_task(read_all(call))
    await settle()
    streams.calls[0].replies.put_nowait(response("a", "refused", error="in ensemble 'ensemble', bad input"))
    assert await reader == ["refused"]
    assert call.ended
    streams.shared.close()


async def test_a_cancel_ends_only_that_request_and_a_cancelled_request_is_never_written() -> None:
    streams = Streams(1)
    kept, cancelled = streams.shared.call("kept", request("kept"), None), streams.shared.call("x", request("x"), None)
    never_sent = streams.shared.call("never", request("never"), None)
    assert never_sent.cancel()
    await settle()
    assert [r.id for r in streams.calls[0].written] == ["kept", "x"]
    reader = asyncio.create_task(read_all(cancelled))
    await settle()
    assert cancelled.cancel() and not cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    streams.calls[0].replies.put_nowait(response("x", "after the cancel"))
    streams.calls[0].replies.put_nowait(response("kept", "k", final=True))
    assert await read_all(kept) == ["k"]
    streams.shared.close()


async def test_a_deadline_fails_the_request_as_a_call_s_deadline_would() -> None:
    streams = Streams(1)
    call = streams.shared.call("slow", request("slow"), 0.05)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read_all(call)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not streams.shared.holds("slow")
    streams.shared.close()


async def test_a_failed_stream_fails_every_request_on_it_and_the_next_request_opens_a_new_one() -> None:
    streams = Streams(1)
    calls = [streams.shared.call(name, request(name), None) for name in ("a", "b")]
    await settle()
    streams.calls[0].replies.put_nowait(response("a", "a1"))
    metadata = grpc.aio.Metadata()
    lost = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, metadata, metadata, "Socket closed")
    streams.calls[0].replies.put_nowait(lost)
    readers = [DetachedStream(call, set()) for call in calls]
    first = await anext(readers[0])
    assert [reply.infer_response.model_name for reply in first] == ["a1"]  # what came before the failure first
    for reader in readers:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await anext(reader)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    await settle()
    assert all(task.done() for task in streams.shared._streams[0]._tasks)  # the failed stream left nothing running
    later = streams.shared.call("c", request("c"), None)
    await settle()
    assert len(streams.calls) == 2 and [r.id for r in streams.calls[1].written] == ["c"]
    streams.calls[1].replies.put_nowait(response("c", "c1", final=True))
    assert await read_all(later) == ["c1"]
    streams.shared.close()


async def test_a_stream_the_server_ends_ends_its_requests_without_a_final_response() -> None:
    streams = Streams(1)
    call = streams.shared.call("a", request("a"), None)
    await settle()
    streams.calls[0].replies.put_nowait(END)
    assert await read_all(call) == []  # the engine reports "closed before the final response"
    streams.shared.close()


async def test_a_failed_write_fails_the_stream_s_requests() -> None:
    streams = Streams(1)
    first = streams.shared.call("a", request("a"), None)
    await settle()
    metadata = grpc.aio.Metadata()
    streams.calls[0].write_error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, metadata, metadata, "down")
    second = streams.shared.call("b", request("b"), None)
    for call in (first, second):
        with pytest.raises(grpc.aio.AioRpcError):
            await read_all(call)
    streams.shared.close()


async def test_an_id_already_open_is_reported_so_that_its_twin_gets_a_call_of_its_own() -> None:
    streams = Streams(2)
    call = streams.shared.call("same", request("same"), None)
    assert streams.shared.holds("same")
    call.cancel()
    assert not streams.shared.holds("same")
    streams.shared.close()


# ---- TritonEngine over shared streams -----------------------------------------------------------------------


def engine_on_shared_streams(streams: Streams, stops: list[str]) -> TritonEngine:
    """An ensemble engine whose engine model takes stop requests, its requests on `streams`."""
    engine = TritonEngine(TritonEngineConfig(url="fake:1"))
    engine._codec = TextCodec(INTERFACE, mode="ensemble", cumulative=False)
    engine._shared = streams.shared
    engine._stream_infer = lambda message, **_: pytest.fail("a call of its own")  # type: ignore[assignment]
    engine._stop_targets = (STOP_TARGET,)
    engine._engine_stoppable = True

    async def send_stop(request_id: str, first: bool) -> None:
        stops.append(request_id)

    engine._stops = StopRequests(send_stop, engine._background)
    return engine


def with_id(reply: service_pb2.ModelStreamInferResponse, request_id: str) -> service_pb2.ModelStreamInferResponse:
    reply.infer_response.id = request_id
    return reply


async def start(engine: TritonEngine, request_id: str) -> tuple[AsyncGenerator[Delta, None], asyncio.Task[Delta]]:
    """A streamed generation, waiting for its first delta once its request is written."""
    deltas = engine.generate(GenerationRequest(request_id=request_id, prompt="hi", max_tokens=5, stream=True))
    first = asyncio.create_task(anext(deltas))
    await settle()
    return deltas, first


async def test_a_request_on_a_shared_stream_that_its_client_leaves_is_stopped_not_cancelled() -> None:
    streams, stops = Streams(1), []
    engine = engine_on_shared_streams(streams, stops)
    deltas, first = await start(engine, "req-1")
    (stream,) = streams.calls
    assert [r.id for r in stream.written] == ["req-1"]
    stream.replies.put_nowait(with_id(engine_response("a"), "req-1"))
    assert (await first).text == "a"
    await deltas.aclose()  # the client left: the request is stopped, and the stream stays open
    await asyncio.sleep(RETRY_S + 0.05)
    assert stops == ["req-1", "req-1"] and not stream.cancelled and engine._slots.in_use == 1
    stream.replies.put_nowait(with_id(engine_response("", final=True), "req-1"))  # the stop ended it
    await asyncio.sleep(RETRY_S * 2 + 0.1)
    assert stops == ["req-1", "req-1"] and engine._slots.in_use == 0 and not streams.shared.holds("req-1")
    streams.shared.close()


async def test_a_request_with_trace_context_or_an_id_already_open_gets_a_call_of_its_own() -> None:
    streams, own_calls = Streams(1), []
    engine = engine_on_shared_streams(streams, [])

    def own_call(message: bytes, metadata: object = None, **_: object) -> FakeCall:
        own_calls.append((service_pb2.ModelInferRequest.FromString(message).id, metadata))
        call = FakeCall()
        call.responses.put_nowait(engine_response("x", final=True))
        call.responses.put_nowait(None)
        return call

    engine._stream_infer = own_call  # type: ignore[assignment]
    traced = GenerationRequest(
        request_id="traced",
        prompt="hi",
        max_tokens=5,
        stream=True,
        trace_headers=(("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),),
    )
    assert [delta.text async for delta in engine.generate(traced)] == ["x"]
    held = engine.generate(GenerationRequest(request_id="twin", prompt="hi", max_tokens=5, stream=True))
    waiting = asyncio.create_task(anext(held))
    await settle()
    twin = GenerationRequest(request_id="twin", prompt="hi", max_tokens=5, stream=True)
    assert [delta.text async for delta in engine.generate(twin)] == ["x"]
    assert [request_id for request_id, _ in own_calls] == ["traced", "twin"]
    assert own_calls[0][1] and [r.id for r in streams.calls[0].written] == ["twin"]
    waiting.cancel()
    streams.shared.close()


async def test_a_request_that_triton_answered_with_an_error_is_not_stopped() -> None:
    """A stop after the error would reach the retry that reuses its id (an evicted LoRA adapter's, sent again)."""
    streams, stops = Streams(1), []
    engine = engine_on_shared_streams(streams, stops)
    _deltas, first = await start(engine, "req-1")
    streams.calls[0].replies.put_nowait(response("req-1", error="LoRA task 7 not found in cache"))
    with pytest.raises(UpstreamError, match="not found in cache"):
        await first
    await asyncio.sleep(RETRY_S + 0.05)
    assert stops == [] and engine._slots.in_use == 0
    streams.shared.close()


async def test_a_request_whose_cancel_stops_the_engine_keeps_a_call_of_its_own() -> None:
    """Direct mode: the call's cancel stops the engine within a step, and grpc reads many calls' bursts at once."""
    streams, own_calls = Streams(1), []
    engine = engine_on_shared_streams(streams, [])
    engine._codec = TextCodec(INTERFACE, mode="ensemble", cumulative=False, stops_engine_on_cancel=True)
    call = FakeCall()
    call.responses.put_nowait(engine_response("a"))

    def own_call(message: bytes, **_: object) -> FakeCall:
        own_calls.append(service_pb2.ModelInferRequest.FromString(message).id)
        return call

    engine._stream_infer = own_call  # type: ignore[assignment]
    deltas = engine.generate(GenerationRequest(request_id="direct-1", prompt="hi", max_tokens=5, stream=True))
    assert (await anext(deltas)).text == "a"
    await deltas.aclose()
    await asyncio.sleep(0.01)
    assert own_calls == ["direct-1"] and streams.calls == [] and call.cancelled
