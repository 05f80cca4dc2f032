"""bench.grpc_call_cost's shared streams: every request's responses reach it and no other, whatever the order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tritonclient.grpc import service_pb2

from bench.grpc_call_cost import _SharedStreams


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


def reply(request_id: str, text: str) -> service_pb2.ModelStreamInferResponse:
    response = service_pb2.ModelStreamInferResponse()
    response.infer_response.id = request_id
    response.infer_response.model_name = text
    return response


async def take(replies: AsyncIterator[service_pb2.ModelStreamInferResponse], count: int) -> list[str]:
    return [(await anext(replies)).infer_response.model_name for _ in range(count)]


def test_responses_interleaved_on_shared_calls_reach_their_own_request() -> None:
    async def scenario() -> None:
        calls: list[FakeCall] = []

        def open_call() -> FakeCall:
            calls.append(FakeCall())
            return calls[-1]

        streams = _SharedStreams(open_call, 2)
        message = service_pb2.ModelInferRequest(model_name="ensemble")
        first, second = streams.replies(message), streams.replies(message)
        first_task = asyncio.create_task(take(first, 2))
        second_task = asyncio.create_task(take(second, 2))
        await asyncio.sleep(0.01)
        assert [len(call.written) for call in calls] == [1, 1]  # one request on each call, round robin
        first_id, second_id = calls[0].written[0].id, calls[1].written[0].id
        assert first_id != second_id
        # Triton answers on the call it was asked on; the id picks the request, in any order.
        calls[1].replies.put_nowait(reply(second_id, "b1"))
        calls[0].replies.put_nowait(reply(first_id, "a1"))
        calls[0].replies.put_nowait(reply("a request that left", "dropped"))
        calls[1].replies.put_nowait(reply(second_id, "b2"))
        calls[0].replies.put_nowait(reply(first_id, "a2"))
        assert await first_task == ["a1", "a2"]
        assert await second_task == ["b1", "b2"]
        await first.aclose()
        await second.aclose()
        assert streams._waiting == {}
        await streams.close()
        assert all(call.cancelled for call in calls)

    asyncio.run(scenario())
