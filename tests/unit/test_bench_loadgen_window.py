"""bench.loadgen: streams cut at the window's end are credited at a tokens-per-chunk factor that was measured."""

from __future__ import annotations

import asyncio
import time

from bench.loadgen import COMPLETION_WAIT_S, _first_completion
from bench.runner import LOADGEN_GRACE_S
from bench.window import RequestClock, WindowStats


async def test_streams_run_past_the_window_until_one_completes_with_a_usage() -> None:
    now = time.monotonic()
    stats = WindowStats(now - 1.0, now, trust_usage=True)  # the window has just ended
    cut = RequestClock(stats, now - 1.0)
    for _ in range(10):
        cut.content(now - 0.5)  # ten chunks inside the window, its request still running

    async def completes_later() -> None:
        clock = RequestClock(stats, now - 1.0)
        for _ in range(5):
            clock.content(time.monotonic())
        await asyncio.sleep(0.1)
        clock.usage_tokens = 20  # five chunks of four tokens (a stream interval of 4)
        clock.finish(time.monotonic(), streamed=True)

    task = asyncio.ensure_future(completes_later())
    await _first_completion(stats, [task])
    assert task.done()
    cut.abandon()
    assert stats.tokens == 10 * 4.0  # not 10 chunks at one token each


async def test_no_wait_once_a_stream_has_completed() -> None:
    now = time.monotonic()
    stats = WindowStats(now - 1.0, now, trust_usage=True)
    stats.usage_tokens_seen, stats.usage_chunks_seen = 8, 8
    never = asyncio.ensure_future(asyncio.sleep(60))
    started = time.monotonic()
    await _first_completion(stats, [never])
    assert time.monotonic() - started < 0.05
    never.cancel()


def test_the_runner_outwaits_the_load_generators_wait_for_a_completion() -> None:
    # With 4,000 held streams no 256-token request ends within the load generators' wait: the runner must not give
    # up on them first (it did, at 120 s each, and the point failed).
    assert LOADGEN_GRACE_S >= COMPLETION_WAIT_S + 60.0
