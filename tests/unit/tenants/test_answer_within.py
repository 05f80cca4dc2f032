"""`answer_within`, the Redis calls' timeout: an answer is returned, a call that never answers is given up after
the timeout, a busy event loop's time is not counted against the call, and a cancelled caller cancels the call."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.tenants.redis_limits import answer_within


async def test_an_answer_is_returned_and_an_error_raised() -> None:
    async def answer() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    async def failure() -> str:
        raise ConnectionError("refused")

    assert await answer_within(answer(), 0.25) == "ok"
    with pytest.raises(ConnectionError):
        await answer_within(failure(), 0.25)


async def test_a_call_that_never_answers_is_given_up_and_cancelled() -> None:
    never = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await answer_within(never, 0.1)
    assert 0.09 < time.monotonic() - started < 0.2
    assert never.cancelled()


async def test_time_the_loop_spent_elsewhere_is_not_the_calls() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.02, time.sleep, 0.3)  # another request's long synchronous step
    # The answer comes in while the loop is busy; as a socket's reply, it reaches the caller a few steps later.
    loop.call_later(0.05, lambda: loop.call_soon(lambda: loop.call_soon(reply.set_result, "ok")))
    assert await answer_within(reply, 0.1) == "ok"


async def test_a_cancelled_caller_cancels_the_call() -> None:
    never = asyncio.get_running_loop().create_future()
    caller = asyncio.ensure_future(answer_within(never, 10))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert never.cancelled()
