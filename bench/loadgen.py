"""Load-generator process: `python -m bench.loadgen SPEC.json RESULT.json`.

Runs `streams` closed-loop streams (each sends its next request when the previous one ends) against an
OpenAI-compatible URL or straight at Triton over gRPC, measures what falls into the window given in the spec, and
writes the result, including its own CPU time, as JSON. Several of these processes can share one run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.clients import openai_stream, stop_requests, triton_stream
from bench.http_client import HttpTarget
from bench.window import WindowStats


@dataclass
class GenSpec:
    """What one load-generator process does."""

    client: Literal["openai", "triton"]
    target: str  # base URL (openai) or host:port (triton gRPC)
    stream: bool
    streams: int  # streams in this process
    first_stream: int  # global index of this process's first stream
    total_streams: int
    t_start: float  # monotonic time of the first request
    ramp_s: float
    window_start: float
    window_end: float
    requests_per_stream: int = 0  # >0: count mode (no window; everything is measured)
    chat: bool = True
    path: str = "/v1/chat/completions"
    bodies: list[str] = field(default_factory=list)  # openai: JSON bodies, one per prompt
    headers: dict[str, str] = field(default_factory=dict)
    triton_requests: list[str] = field(default_factory=list)  # triton: base64 ModelInferRequest per prompt
    trust_usage: bool = True
    tokenizer_file: str = ""  # to count tokens of non-streamed texts when usage is not trusted
    cpus: list[int] = field(default_factory=list)


def _pin(cpus: list[int]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


async def _staggered(coro: Any, at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    await coro


def _stream_coroutines(spec: GenSpec, stats: WindowStats, inflight: set[str]) -> tuple[list[Any], Any]:
    """One coroutine per stream, and the gRPC stub (None for HTTP)."""
    step = spec.total_streams
    if spec.client == "openai":
        target = HttpTarget.parse(spec.target)
        requests = [target.request_bytes(spec.path, b.encode(), spec.headers) for b in spec.bodies]
        coroutines = [
            openai_stream(
                target,
                requests,
                spec.first_stream + i,
                step,
                stats,
                chat=spec.chat,
                stream=spec.stream,
                count=spec.requests_per_stream,
            )
            for i in range(spec.streams)
        ]
        return coroutines, None
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.aio.insecure_channel(spec.target, options=options)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    templates = [service_pb2.ModelInferRequest.FromString(base64.b64decode(r)) for r in spec.triton_requests]
    tag = f"bench{os.getpid()}"
    coroutines = [
        triton_stream(
            stub,
            templates,
            spec.first_stream + i,
            step,
            stats,
            stream=spec.stream,
            count=spec.requests_per_stream,
            tag=tag,
            inflight=inflight,
        )
        for i in range(spec.streams)
    ]
    return coroutines, (channel, stub, templates[0].model_name if templates else "")


async def run(spec: GenSpec) -> dict[str, Any]:
    """Run the streams and return the measurements."""
    count_mode = spec.requests_per_stream > 0
    start, end = (spec.t_start, math.inf) if count_mode else (spec.window_start, spec.window_end)
    stats = WindowStats(start, end, spec.trust_usage)
    inflight: set[str] = set()
    coroutines, grpc_client = _stream_coroutines(spec, stats, inflight)
    tasks = [
        asyncio.ensure_future(
            _staggered(c, spec.t_start + spec.ramp_s * (spec.first_stream + i) / max(1, spec.total_streams))
        )
        for i, c in enumerate(coroutines)
    ]
    cpu0 = cpu1 = 0.0
    if count_mode:
        await asyncio.sleep(max(0.0, spec.t_start - time.monotonic()))
        cpu0 = time.process_time()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cpu1 = time.process_time()
        measured_end = time.monotonic()
        measured_start = spec.t_start
    else:
        await asyncio.sleep(max(0.0, spec.window_start - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, spec.window_end - time.monotonic()))
        cpu1 = time.process_time()
        measured_start, measured_end = spec.window_start, spec.window_end
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            stats.error(f"stream crashed: {result!r}", time.monotonic())
    stops_failed = 0
    if grpc_client is not None:
        channel, stub, model = grpc_client
        if inflight and model != "tensorrt_llm":  # a cancelled direct call to tensorrt_llm stops by itself
            stops_failed = await stop_requests(stub, inflight)
        with contextlib.suppress(Exception):
            await channel.close()
    if stats.untrusted_texts:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(spec.tokenizer_file)
        stats.tokens += sum(len(e.ids) for e in tokenizer.encode_batch(stats.untrusted_texts, add_special_tokens=False))
    return {
        "pid": os.getpid(),
        "streams": spec.streams,
        "cpu_s": cpu1 - cpu0,
        "measured_start": measured_start,
        "measured_end": measured_end,
        "stops_sent": len(inflight),
        "stops_failed": stops_failed,
        **stats.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: read the spec, run, write the result."""
    args = argv if argv is not None else sys.argv[1:]
    spec = GenSpec(**json.loads(Path(args[0]).read_text()))
    _pin(spec.cpus)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
