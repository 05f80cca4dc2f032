"""bench.grpc_call_cost's `shared` style: the gateway's shared streams, each request's replies up to its final one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from tritonclient.grpc import service_pb2

from bench.grpc_call_cost import _shared_replies
from gateway.engine.shared_streams import SharedStreams
from gateway.engine.tensors import FINAL_RESPONSE_PARAMETER


class FakeCall:
    """A long-lived stream-stream call: records what is written, yields what the test puts in."""

    def __init__(self) -> None:
        self.written: list[service_pb2.ModelInferRequest] = []
        self.replies: asyncio.Queue[service_pb2.ModelStreamInferResponse | None] = asyncio.Queue()
        self.cancelled = False

    async def write(self, data: bytes) -> None:
        self.written.append(service_pb2.ModelInferRequest.FromString(data))

    async def __aiter__(self) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        while (reply := await self.replies.get()) is not None:
            yield reply

    def cancel(self) -> None:
        self.cancelled = True
        self.replies.put_nowait(None)


def reply(request_id: str, text: str, final: bool = False) -> service_pb2.ModelStreamInferResponse:
    response = service_pb2.ModelStreamInferResponse()
    response.infer_response.id = request_id
    response.infer_response.model_name = text
    if final:
        response.infer_response.parameters[FINAL_RESPONSE_PARAMETER].bool_param = True
    return response


async def texts(replies: AsyncIterator[service_pb2.ModelStreamInferResponse]) -> list[str]:
    return [r.infer_response.model_name async for r in replies]


def test_replies_interleaved_on_shared_streams_reach_their_own_request_and_end_at_the_final_one() -> None:
    async def scenario() -> None:
        calls: list[FakeCall] = []

        def open_call() -> FakeCall:
            calls.append(FakeCall())
            return calls[-1]

        streams = SharedStreams(open_call, 2)
        ids = itertools.count()
        background: set[asyncio.Task[None]] = set()
        message = service_pb2.ModelInferRequest(model_name="ensemble")
        first = asyncio.create_task(texts(_shared_replies(streams, ids, message, background)))
        second = asyncio.create_task(texts(_shared_replies(streams, ids, message, background)))
        await asyncio.sleep(0.01)
        assert [len(call.written) for call in calls] == [1, 1]  # one request on each stream, round robin
        first_id, second_id = calls[0].written[0].id, calls[1].written[0].id
        assert first_id != second_id
        # Triton answers on the stream it was asked on; the id picks the request, in any order.
        calls[1].replies.put_nowait(reply(second_id, "b1"))
        calls[0].replies.put_nowait(reply(first_id, "a1"))
        calls[0].replies.put_nowait(reply("a request that left", "dropped"))
        calls[1].replies.put_nowait(reply(second_id, "b2", final=True))
        calls[0].replies.put_nowait(reply(first_id, "a2", final=True))
        assert await asyncio.wait_for(first, 1) == ["a1", "a2"]
        assert await asyncio.wait_for(second, 1) == ["b1", "b2"]
        streams.close()
        await asyncio.sleep(0)
        assert all(call.cancelled for call in calls)

    asyncio.run(scenario())
