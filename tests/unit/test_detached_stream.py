"""DetachedStream: batches of what has arrived; the consumer leaving never cancels the call before the grace period."""

from __future__ import annotations

import asyncio

import pytest

from gateway.engine.detached_stream import READ_AHEAD, DetachedStream


class FakeCall:
    """A gRPC call stand-in: yields queued responses until closed; records cancel()."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        self.responses.put_nowait(asyncio.CancelledError())
        return True

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> object:
        item = await self.responses.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item


async def test_responses_pass_through_in_order_and_the_end_is_seen() -> None:
    call, background = FakeCall(), set()
    stream = DetachedStream(call, background)
    for item in ("a", "b", None):
        call.responses.put_nowait(item)
    assert [item async for batch in stream for item in batch] == ["a", "b"]
    await asyncio.sleep(0)
    assert not background and not call.cancelled


async def test_a_consumer_cancelled_mid_read_leaves_the_call_running() -> None:
    call, background = FakeCall(), set()
    stream = DetachedStream(call, background)

    async def consume() -> None:
        async for _ in stream:
            pass

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    stream.abandon(grace_s=0.2)
    call.responses.put_nowait("late token")  # still read (and dropped) after the consumer left
    call.responses.put_nowait(None)
    await asyncio.sleep(0.05)
    assert not call.cancelled and not background  # ended by itself, no cancel


async def test_a_stream_that_does_not_end_is_cancelled_after_the_grace_period() -> None:
    call, background = FakeCall(), set()
    stream = DetachedStream(call, background)
    stream.abandon(grace_s=0.05)
    await asyncio.sleep(0.02)
    assert not call.cancelled
    await asyncio.sleep(0.08)
    assert call.cancelled
    await asyncio.sleep(0)
    assert not background


async def test_an_rpc_error_reaches_the_consumer() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set())
    call.responses.put_nowait("a")
    call.responses.put_nowait(RuntimeError("upstream broke"))
    assert await stream.__anext__() == ["a"]  # what came before the error is delivered first
    with pytest.raises(RuntimeError, match="upstream broke"):
        await stream.__anext__()


async def test_a_slow_consumer_holds_the_reader_back() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set())
    for index in range(READ_AHEAD * 3):
        call.responses.put_nowait(index)
    await asyncio.sleep(0.05)
    assert call.responses.qsize() >= READ_AHEAD  # not read ahead of the consumer: gRPC flow control applies
    assert await stream.__anext__() == list(range(READ_AHEAD))  # all that was read ahead, in one batch
    stream.abandon(grace_s=0.0)
    call.responses.put_nowait(None)
    await asyncio.sleep(0.05)


async def test_abandoning_frees_a_reader_that_waits_for_room() -> None:
    call, background = FakeCall(), set()
    stream = DetachedStream(call, background)
    for index in range(READ_AHEAD * 2):
        call.responses.put_nowait(index)
    call.responses.put_nowait(None)
    await asyncio.sleep(0.05)
    assert background  # blocked on the full queue
    stream.abandon(grace_s=1.0)
    await asyncio.sleep(0.05)
    assert not background and call.responses.empty() and not call.cancelled  # drained to the end, not cancelled


async def test_responses_that_arrive_while_the_consumer_is_busy_come_as_one_batch() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set())
    call.responses.put_nowait("a")
    assert await stream.__anext__() == ["a"]
    for item in ("b", "c", "d"):
        call.responses.put_nowait(item)
    await asyncio.sleep(0.01)  # the consumer is busy (writing to its client) while these arrive
    assert await stream.__anext__() == ["b", "c", "d"]
    call.responses.put_nowait(None)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_abandoning_with_no_grace_cancels_at_once() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set())
    stream.abandon(grace_s=0.0)
    assert call.cancelled


async def _done_within(batch: asyncio.Future[list[object]], seconds: float) -> bool:
    """Whether a pending __anext__ has its batch within `seconds` (the read stays pending if not)."""
    done, _ = await asyncio.wait({batch}, timeout=seconds)
    return bool(done)


async def test_a_stream_interval_sends_the_first_response_at_once_then_every_n() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set(), wake_every=3)
    call.responses.put_nowait("a")
    assert await asyncio.wait_for(stream.__anext__(), 0.5) == ["a"]  # the first token is not held back
    batch = asyncio.ensure_future(stream.__anext__())
    for item in ("b", "c"):
        call.responses.put_nowait(item)
    assert not await _done_within(batch, 0.05)  # two of three: the consumer still waits
    call.responses.put_nowait("d")
    assert await _done_within(batch, 0.5) and batch.result() == ["b", "c", "d"]
    call.responses.put_nowait("e")
    call.responses.put_nowait(None)  # the end releases what is left, fewer than three
    assert await asyncio.wait_for(stream.__anext__(), 0.5) == ["e"]
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_a_failure_releases_a_partial_batch_under_a_stream_interval() -> None:
    call = FakeCall()
    stream = DetachedStream(call, set(), wake_every=4)
    call.responses.put_nowait("a")
    assert await asyncio.wait_for(stream.__anext__(), 0.5) == ["a"]
    call.responses.put_nowait("b")
    call.responses.put_nowait(RuntimeError("upstream broke"))
    assert await asyncio.wait_for(stream.__anext__(), 0.5) == ["b"]
    with pytest.raises(RuntimeError, match="upstream broke"):
        await stream.__anext__()


def test_a_stream_interval_beyond_the_read_ahead_is_refused() -> None:
    with pytest.raises(ValueError, match="wake_every"):
        DetachedStream(FakeCall(), set(), wake_every=READ_AHEAD + 1)
