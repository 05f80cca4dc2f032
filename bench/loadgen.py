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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import psutil
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
    protocol: str = "chat"  # chat | responses | messages: the request bodies' protocol
    path: str = "/v1/chat/completions"
    bodies: list[str] = field(default_factory=list)  # openai: JSON bodies, one per prompt
    headers: dict[str, str] = field(default_factory=dict)
    triton_requests: list[str] = field(default_factory=list)  # triton: base64 ModelInferRequest per prompt
    probe_bodies: list[str] = field(default_factory=list)  # one extra stream of short requests (TTFT under load)
    probe_triton_requests: list[str] = field(default_factory=list)
    trust_usage: bool = True
    tokenizer_file: str = ""  # to count tokens of non-streamed texts when usage is not trusted
    cpus: list[int] = field(default_factory=list)


def _pin(cpus: list[int]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


# After the window, how long the streams may run on until one completes (see _first_completion).
COMPLETION_WAIT_S = 120.0


async def _first_completion(stats: WindowStats, tasks: Sequence[asyncio.Future[Any]]) -> None:
    """When no stream has completed with a usage yet, let them run past the window until one does.

    A stream cut at the window's end credits its chunks at the completed streams' tokens per chunk (1.0 when none
    completed): right when every chunk is one token, 4x too few with `--stream-interval 4` at 256 streams, where
    no 256-token request ends inside a 5 s window. Chunks after the window are not counted; only the factor is
    waited for.
    """
    deadline = time.monotonic() + COMPLETION_WAIT_S
    while stats.trust_usage and not stats.usage_chunks_seen and time.monotonic() < deadline:
        if all(task.done() for task in tasks):
            return
        await asyncio.sleep(0.05)


async def _staggered(coro: Any, at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    await coro


class _Streams:
    """Makes the stream coroutines of this process: HTTP or gRPC, main streams or the TTFT probe."""

    def __init__(self, spec: GenSpec) -> None:
        self.spec = spec
        self.inflight: set[str] = set()
        self.channel: grpc.aio.Channel | None = None
        if spec.client == "openai":
            self.target = HttpTarget.parse(spec.target)
            self.requests = [self.target.request_bytes(spec.path, b.encode(), spec.headers) for b in spec.bodies]
            self.probes = [self.target.request_bytes(spec.path, b.encode(), spec.headers) for b in spec.probe_bodies]
            return
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.aio.insecure_channel(spec.target, options=options)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        decode = service_pb2.ModelInferRequest.FromString
        self.templates = [decode(base64.b64decode(r)) for r in spec.triton_requests]
        self.probe_templates = [decode(base64.b64decode(r)) for r in spec.probe_triton_requests]

    def stream(self, stats: WindowStats, first: int, step: int, count: int, probe: bool = False) -> Any:
        """One closed-loop stream."""
        spec = self.spec
        if spec.client == "openai":
            requests = self.probes if probe else self.requests
            return openai_stream(
                self.target, requests, first, step, stats, protocol=spec.protocol, stream=spec.stream, count=count
            )
        templates = self.probe_templates if probe else self.templates
        tag = f"bench{os.getpid()}{'p' if probe else ''}"
        return triton_stream(
            self.stub, templates, first, step, stats, stream=spec.stream, count=count, tag=tag, inflight=self.inflight
        )

    async def close(self) -> int:
        """Stop what is still generating upstream (ensemble, BLS) and close the channel; failed stops."""
        if self.channel is None:
            return 0
        failed = 0
        model = self.templates[0].model_name if self.templates else ""
        if self.inflight and model != "tensorrt_llm":  # a cancelled direct call to tensorrt_llm stops by itself
            failed = await stop_requests(self.stub, self.inflight)
        with contextlib.suppress(Exception):
            await self.channel.close()
        return failed


async def run(spec: GenSpec) -> dict[str, Any]:
    """Run the streams and return the measurements."""
    count_mode = spec.requests_per_stream > 0
    start, end = (spec.t_start, math.inf) if count_mode else (spec.window_start, spec.window_end)
    stats = WindowStats(start, end, spec.trust_usage)
    probe_stats = WindowStats(start, end, spec.trust_usage)
    streams = _Streams(spec)
    total = max(1, spec.total_streams)
    tasks = [
        asyncio.ensure_future(
            _staggered(
                streams.stream(stats, spec.first_stream + i, spec.total_streams, spec.requests_per_stream),
                spec.t_start + spec.ramp_s * (spec.first_stream + i) / total,
            )
        )
        for i in range(spec.streams)
    ]
    if not count_mode and spec.probe_bodies + spec.probe_triton_requests:
        probe = streams.stream(probe_stats, 0, 1, 0, probe=True)
        tasks.append(asyncio.ensure_future(_staggered(probe, spec.t_start + spec.ramp_s)))
    rss_start = psutil.Process().memory_info().rss
    if count_mode:
        await asyncio.sleep(max(0.0, spec.t_start - time.monotonic()))
        cpu0 = time.process_time()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cpu1 = time.process_time()
        rss_end = psutil.Process().memory_info().rss
        measured_start, measured_end = spec.t_start, time.monotonic()
    else:
        await asyncio.sleep(max(0.0, spec.window_start - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, spec.window_end - time.monotonic()))
        cpu1 = time.process_time()
        rss_end = psutil.Process().memory_info().rss  # every stream still open
        measured_start, measured_end = spec.window_start, spec.window_end
        await _first_completion(stats, tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            stats.error(f"stream crashed: {result!r}", time.monotonic())
    stops_sent = len(streams.inflight)
    stops_failed = await streams.close()
    stats.tokens += probe_stats.tokens
    stats.errors += probe_stats.errors
    stats.error_samples += probe_stats.error_samples
    texts = stats.untrusted_texts + probe_stats.untrusted_texts
    if texts:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(spec.tokenizer_file)
        stats.tokens += sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    return {
        "pid": os.getpid(),
        "streams": spec.streams,
        "cpu_s": cpu1 - cpu0,
        "measured_start": measured_start,
        "measured_end": measured_end,
        "stops_sent": stops_sent,
        "stops_failed": stops_failed,
        "rss_start": rss_start,
        "rss_end": rss_end,
        "probe_ttft": probe_stats.ttft,
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
