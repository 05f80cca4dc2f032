"""Ending abandoned work upstream: the per-upstream slots, the repeated stop requests, and TritonEngine using both."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.grpc import service_pb2

from gateway.engine.base import GenerationRequest
from gateway.engine.detached_stream import DetachedStream
from gateway.engine.stop_requests import FAST_RETRIES, RETRY_S, StopRequests, StopTarget
from gateway.engine.tensors import ModelInterface
from gateway.engine.triton import TritonEngine
from gateway.engine.upstream_slots import UpstreamSlots
from gateway.errors import UpstreamTimeoutError
from tests.unit.test_detached_stream import FakeCall
from tests.unit.test_triton_engine_unit import engine_over, response

# ---- UpstreamSlots ----------------------------------------------------------------------------------------


async def test_requests_beyond_the_limit_wait_and_are_served_in_arrival_order() -> None:
    slots, order = UpstreamSlots(2), []

    async def take(name: str) -> None:
        await slots.acquire(None)
        order.append(name)

    for name in "ab":
        await take(name)
    waiting = [asyncio.create_task(take(name)) for name in "cde"]
    await asyncio.sleep(0.01)
    assert order == ["a", "b"] and slots.waiting == 3 and slots.in_use == 2
    slots.release()
    slots.release()
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "d"] and slots.in_use == 2
    slots.release()
    await asyncio.gather(*waiting)
    assert order == ["a", "b", "c", "d", "e"]


async def test_a_waiter_that_leaves_takes_no_slot_with_it() -> None:
    slots = UpstreamSlots(1)
    await slots.acquire(None)
    left = asyncio.create_task(slots.acquire(None))
    stays = asyncio.create_task(slots.acquire(None))
    await asyncio.sleep(0.01)
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left
    with pytest.raises(TimeoutError):
        await slots.acquire(0.01)
    slots.release()
    await stays  # the slot went past the waiter that left
    assert slots.in_use == 1 and slots.waiting == 0
    slots.release()
    assert slots.in_use == 0


async def test_a_request_whose_client_already_left_is_cancelled_before_it_takes_a_slot() -> None:
    """acquire() yields first, so a disconnect watcher that is already due cancels the request there."""
    slots, sent = UpstreamSlots(None), []

    async def watcher(request: asyncio.Task[None]) -> None:
        request.cancel()  # the client had gone: the watcher's first receive() is the disconnect

    async def handle() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().create_task(watcher(task))
        await slots.acquire(None)
        sent.append("upstream call")

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(handle())
    assert sent == [] and slots.in_use == 0


# ---- StopRequests ----------------------------------------------------------------------------------------


class OpenCall:
    def __init__(self) -> None:
        self.ended = False
        self.broken = False


async def test_a_stop_is_sent_again_while_the_call_stays_open_and_no_more_once_it_ended() -> None:
    sent: list[str] = []

    async def send(request_id: str, first: bool) -> None:
        sent.append(request_id)

    stops, call = StopRequests(send, set()), OpenCall()
    stops.stop("r1", call)
    await asyncio.sleep(0.01)
    assert sent == ["r1"]
    await asyncio.sleep(RETRY_S + 0.05)
    assert sent == ["r1", "r1"]  # the request reached the engine after the first stop
    call.ended = True
    await asyncio.sleep(RETRY_S * 2 + 0.1)
    assert sent == ["r1", "r1"]


async def test_no_more_than_the_concurrency_is_in_flight_and_all_are_sent_in_order() -> None:
    in_flight, most, sent = 0, 0, []
    release = asyncio.Event()

    async def send(request_id: str, first: bool) -> None:
        nonlocal in_flight, most
        sent.append(request_id)
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1

    background: set[asyncio.Task[None]] = set()
    stops = StopRequests(send, background, concurrency=4)
    calls = [OpenCall() for _ in range(20)]
    for index, call in enumerate(calls):
        stops.stop(f"r{index}", call)
    await asyncio.sleep(0.01)
    assert in_flight == 4 and len(background) == 4
    for call in calls:
        call.ended = True  # ended meanwhile: each still gets its one stop, and no second
    release.set()
    await asyncio.sleep(RETRY_S + 0.1)
    assert most == 4 and sent == [f"r{index}" for index in range(20)] and not background


async def test_a_call_that_ended_gets_one_stop_and_a_cancelled_one_the_first_two_seconds_of_them() -> None:
    """The consumer left before the final response: the engine is told once whatever became of the call; a call
    cancelled here (a timeout) can no longer show when its generation ends."""
    sent: list[str] = []

    async def send(request_id: str, first: bool) -> None:
        sent.append(request_id)

    stops, ended, cancelled = StopRequests(send, set()), OpenCall(), OpenCall()
    ended.ended = cancelled.ended = cancelled.broken = True
    stops.stop("ended", ended)
    stops.stop("cancelled", cancelled)
    await asyncio.sleep(FAST_RETRIES * RETRY_S + 0.6)
    assert sent.count("ended") == 1 and sent.count("cancelled") == FAST_RETRIES


# ---- TritonEngine ----------------------------------------------------------------------------------------


def request(request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, prompt="hi", max_tokens=5, stream=True)


STOP_TARGET = StopTarget(
    ModelInterface(
        name="tensorrt_llm",
        inputs={"input_ids": "INT32", "input_lengths": "INT32", "request_output_len": "INT32", "stop": "BOOL"},
        outputs={"output_ids": "INT32", "sequence_length": "INT32"},
        decoupled=True,
    ),
    required=("input_lengths", "request_output_len"),
)


def stoppable_engine(calls: list[FakeCall], stops: list[str], limit: int | None = None) -> TritonEngine:
    """An ensemble engine whose generation calls come from `calls` and whose stop requests are recorded."""
    engine = engine_over(calls[0])
    engine._slots = UpstreamSlots(limit)
    engine._stream_infer = lambda message, **_: calls.pop(0)  # type: ignore[assignment]
    engine._stop_targets = (STOP_TARGET,)

    async def send_stop(request_id: str, first: bool) -> None:
        stops.append(request_id)

    engine._stops = StopRequests(send_stop, engine._background)
    return engine


async def test_an_abandoned_ensemble_call_is_stopped_until_it_ends_and_never_cancelled() -> None:
    call, stops = FakeCall(), []
    engine = stoppable_engine([call], stops)
    deltas = engine.generate(request("req-1"))
    call.responses.put_nowait(response("a"))
    assert (await anext(deltas)).text == "a"
    await deltas.aclose()  # the client left
    await asyncio.sleep(RETRY_S + 0.05)
    assert stops == ["req-1", "req-1"]  # still open after the first stop: sent again
    call.responses.put_nowait(response("", final=True))
    call.responses.put_nowait(None)
    await asyncio.sleep(RETRY_S * 2 + 0.1)
    assert stops == ["req-1", "req-1"] and not call.cancelled and engine._slots.in_use == 0


async def test_the_slot_is_held_until_the_abandoned_call_has_ended_upstream() -> None:
    first, second, stops = FakeCall(), FakeCall(), []
    engine = stoppable_engine([first, second], stops, limit=1)
    deltas = engine.generate(request("req-1"))
    first.responses.put_nowait(response("a"))
    await anext(deltas)
    await deltas.aclose()
    waiting = asyncio.create_task(anext(engine.generate(request("req-2"))))
    await asyncio.sleep(0.05)
    assert not waiting.done() and engine._slots.waiting == 1  # the abandoned call still runs upstream
    first.responses.put_nowait(response("", final=True))
    first.responses.put_nowait(None)
    second.responses.put_nowait(response("b"))
    assert (await waiting).text == "b"


async def test_no_slot_within_the_first_token_timeout_is_a_timeout() -> None:
    calls = [FakeCall()]
    engine = stoppable_engine(calls, [], limit=1)
    engine.config = type(engine.config)(url="fake:1", first_token_timeout_s=0.05)
    engine._slots.in_use = 1
    with pytest.raises(UpstreamTimeoutError, match=r"did not take the request within 0\.05 s"):
        await anext(engine.generate(request("req-3")))


async def test_detached_stream_reports_its_end_once() -> None:
    call, ends = FakeCall(), []
    stream = DetachedStream(call, set(), on_end=lambda: ends.append(1))
    assert not stream.ended
    call.responses.put_nowait(None)
    await asyncio.sleep(0.01)
    assert stream.ended and ends == [1]


# ---- StopTarget ------------------------------------------------------------------------------------------


def test_stop_targets_of_the_production_templates() -> None:
    """tensorrt_llm takes stop requests with its required inputs present; the ensemble and our BLS do not."""
    from tests.unit.test_triton_repo_configs import TRTLLM, load

    assert StopTarget.of(load(TRTLLM / "ensemble" / "config.pbtxt")) is None
    assert StopTarget.of(load(TRTLLM / "tensorrt_llm_bls" / "config.pbtxt")) is None
    for model, required in [("tensorrt_llm", {"input_lengths", "request_output_len"})]:
        target = StopTarget.of(load(TRTLLM / model / "config.pbtxt"))
        assert target is not None and set(target.required) == required
        message = service_pb2.ModelInferRequest.FromString(target.message("req-9"))
        assert message.model_name == model and message.id == "req-9"
        sent = {tensor.name: raw for tensor, raw in zip(message.inputs, message.raw_input_contents, strict=True)}
        assert required <= set(sent) and sent["stop"] == b"\x01"
        assert message.parameters["triton_enable_empty_final_response"].bool_param


async def test_a_called_model_that_takes_stops_gets_the_first_one_and_the_engine_model_every_one() -> None:
    engine = engine_over(FakeCall())
    bls = StopTarget(
        ModelInterface("tensorrt_llm_bls", {"text_input": "BYTES", "max_tokens": "INT32", "stop": "BOOL"}, {}, True),
        required=("text_input", "max_tokens"),
    )
    engine._stop_targets = (STOP_TARGET, bls)
    sent: list[str] = []

    def answer(message: bytes, **_: object) -> FakeCall:
        sent.append(service_pb2.ModelInferRequest.FromString(message).model_name)
        call = FakeCall()
        call.responses.put_nowait(response("", final=True))
        return call

    engine._stream_infer = answer  # type: ignore[assignment]
    await engine._send_stop("req-1", True)
    await asyncio.sleep(0.01)  # the called model's stop is not waited for
    await engine._send_stop("req-1", False)
    assert sorted(sent[:2]) == ["tensorrt_llm", "tensorrt_llm_bls"] and sent[2:] == ["tensorrt_llm"]
