"""CPU per streamed event of the gateway's SSE framing (api/sse.py) against sse-starlette's EventSourceResponse.

Both serve the same pre-built JSON chunks through an in-process ASGI call whose `send` yields to the event loop
(as a socket write does), with a keep-alive of 15 s and a send timeout; alternating rounds, CPU time per event
(`time.process_time`). The issue asked to use sse-starlette where it serves (keep-alive, shutdown) only if it
costs under 5 % more per streamed token:

    python -m bench.sse_cost [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

CHUNK = (
    b'{"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1700000000,"model":"trtllm-dev",'
    b'"system_fingerprint":"fp_0123456789","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,'
    b'"finish_reason":null}]}'
)


async def _receive() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}  # pragma: no cover


async def _send(_: dict[str, Any]) -> None:
    await asyncio.sleep(0)


async def gateway_round(events: int) -> float:
    from gateway.api.sse import SSEResponse

    async def chunks() -> AsyncIterator[list[bytes]]:
        for _ in range(events):
            yield [CHUNK]

    start = time.process_time()
    await SSEResponse(chunks(), 15.0, 60.0)({"type": "http"}, _receive, _send)
    return (time.process_time() - start) / events


async def sse_starlette_round(events: int) -> float:
    from sse_starlette.sse import EventSourceResponse

    async def chunks() -> AsyncIterator[dict[str, str]]:
        text = CHUNK.decode()
        for _ in range(events):
            yield {"data": text}

    start = time.process_time()
    response = EventSourceResponse(chunks(), ping=15, send_timeout=60)
    await response({"type": "http", "method": "POST", "asgi": {"spec_version": "2.4"}}, _receive, _send)
    return (time.process_time() - start) / events


def main() -> None:
    """Print µs per event for both, median of alternating rounds, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        ours.append(asyncio.run(gateway_round(args.events)))
        theirs.append(asyncio.run(sse_starlette_round(args.events)))
    ratios = [b / a for a, b in zip(ours, theirs, strict=True)]
    print(f"api/sse.py       {statistics.median(ours) * 1e6:6.2f} µs/event (median of {args.rounds})")
    print(f"sse-starlette    {statistics.median(theirs) * 1e6:6.2f} µs/event")
    print(f"sse-starlette ÷ api/sse.py: {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
