"""`python -m bench.grpc_call_cost`: client CPU per `ModelStreamInfer` request, three ways to call Triton.

- `stream-stream`: the generated stub's call, one per request (what `tritonclient.grpc.aio` and the benchmark's
  direct client do): three batches, open, write, done_writing.
- `unary-stream`: one call per request, opened as unary-stream (request, metadata and half-close in one batch):
  what the gateway does in direct mode.
- `shared`: `--shared-streams` long-lived stream-stream calls that carry every request, each request written on
  one of them (round robin) under its own id, the responses handed to their request by `infer_response.id` (what
  Triton's stream handler keeps on every response, errors included): the gateway's own `SharedStreams` and
  `DetachedStream`, what it does for ensemble and BLS requests. Nothing is set up per request but the write.

Measured with a bare grpc.aio client on the synthetic dev Triton (no time to first token, no inter-token delay,
`--tokens` output tokens, 8 by default: one response, or one per token and the final with `--stream`),
alternating, each in a fresh process so neither warms the other. `--hold N` also measures what N requests held
open at once (a 60 s inter-token delay) add to the client's RSS, per request.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from gateway.engine.detached_stream import DetachedStream
from gateway.engine.shared_streams import SharedStreams

STYLES = ("stream-stream", "unary-stream", "shared")


def _shared_replies(
    streams: SharedStreams, ids: Iterator[int], message: Any, background: set[asyncio.Task[None]]
) -> AsyncIterator[Any]:
    """The gateway's way: the request written on one of the shared streams under a fresh id, its replies handed
    over by the stream's reader (engine/shared_streams.py, engine/detached_stream.py) up to the final one."""
    request_id = str(next(ids))
    message.id = request_id
    batches = DetachedStream(streams.call(request_id, message.SerializeToString(), None), background)

    async def replies() -> AsyncIterator[Any]:
        async for batch in batches:
            for reply in batch:
                yield reply

    return replies()


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def _measure(
    grpc_url: str,
    style: str,
    concurrency: int,
    seconds: float,
    model_dir: str,
    stream: bool,
    tokens: int,
    shared: int,
    hold: int,
) -> dict[str, float]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from bench.clients import FINAL
    from bench.prompts import make_prompts
    from bench.triton_requests import build_request, model_config, upstream_codec
    from gateway.engine.triton import STREAM_INFER_METHOD

    codec = upstream_codec(model_config(grpc_url, "ensemble"), None)
    message = build_request(codec, make_prompts(model_dir, 100)[0], tokens, stream or hold > 0)
    channel = grpc.aio.insecure_channel(grpc_url)
    stub_call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer
    one_batch_call = channel.unary_stream(
        STREAM_INFER_METHOD,
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
    )
    bytes_call = channel.stream_stream(
        STREAM_INFER_METHOD, response_deserializer=service_pb2.ModelStreamInferResponse.FromString
    )
    streams = SharedStreams(bytes_call, shared) if style == "shared" else None
    ids = itertools.count()
    background: set[asyncio.Task[None]] = set()
    done = 0
    responses = 0

    def replies() -> AsyncIterator[Any]:
        if streams is not None:
            return _shared_replies(streams, ids, message, background)
        if style == "stream-stream":
            return _stub_replies(stub_call, message)
        return one_batch_call(message).__aiter__()

    async def one_request() -> None:
        nonlocal responses
        async for reply in replies():
            responses += 1
            final = reply.infer_response.parameters.get(FINAL)
            if reply.error_message or (final is not None and final.bool_param):
                break

    async def closed_loop(until: float) -> None:
        nonlocal done
        while time.monotonic() < until:
            await one_request()
            done += 1

    if hold:  # on the slow server: only what held requests cost
        result = {"held_kb_per_request": await _held_kb(replies, hold)}
    else:
        await asyncio.gather(*(closed_loop(time.monotonic() + 1.0) for _ in range(concurrency)))  # warm-up
        done = responses = 0
        started = time.process_time()
        await asyncio.gather(*(closed_loop(time.monotonic() + seconds) for _ in range(concurrency)))
        cpu = time.process_time() - started
        result = {"cpu_us_per_request": cpu / done * 1e6, "cpu_us_per_response": cpu / responses * 1e6}
    if streams is not None:
        streams.close()
    await channel.close()
    return result


async def _stub_replies(stub_call: Any, message: Any) -> AsyncIterator[Any]:
    call = stub_call()
    await call.write(message)
    await call.done_writing()
    async for reply in call:
        yield reply


async def _held_kb(replies: Callable[[], AsyncIterator[Any]], count: int) -> float:
    """RSS per request while `count` requests wait for a response that does not come (a 60 s ITL)."""
    first = asyncio.Event()
    arrived = 0

    async def held() -> None:
        nonlocal arrived
        async for _reply in replies():
            arrived += 1
            if arrived == count:
                first.set()
            await asyncio.sleep(3600)

    before = _rss_kb()
    tasks = [asyncio.create_task(held()) for _ in range(count)]
    await asyncio.wait_for(first.wait(), 120)
    await asyncio.sleep(1.0)
    grown = _rss_kb() - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return grown / count


def _child(url: str, style: str, model_dir: str, args: argparse.Namespace, hold: int) -> dict[str, float]:
    command = [
        *(sys.executable, "-m", "bench.grpc_call_cost"),
        *("--concurrency", str(args.concurrency), "--seconds", str(args.seconds)),
        *("--shared-streams", str(args.shared_streams), "--child-hold", str(hold)),
        *(("--stream",) if args.stream else ()),
        *("--tokens", str(args.tokens)),
        *("--child", url, style, model_dir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"{style} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> int:
    """Start the synthetic Triton, measure each call style `--rounds` times in alternation."""
    p = argparse.ArgumentParser(prog="python -m bench.grpc_call_cost", description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stream", action="store_true", help="a response per token, and the final one")
    p.add_argument("--tokens", type=int, default=8, help="output tokens per request")
    p.add_argument("--shared-streams", type=int, default=4, help="long-lived calls of the `shared` style")
    p.add_argument("--hold", type=int, default=0, help="also the RSS per request with this many held open")
    p.add_argument("--child", nargs=3, metavar=("GRPC_URL", "STYLE", "MODEL_DIR"), help=argparse.SUPPRESS)
    p.add_argument("--child-hold", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import uvloop

        url, style, model_dir = args.child
        measured = _measure(
            url,
            style,
            args.concurrency,
            args.seconds,
            model_dir,
            args.stream,
            args.tokens,
            args.shared_streams,
            args.child_hold,
        )
        print(json.dumps(uvloop.run(measured)))
        return 0

    from gateway.devstack import DevStackOptions, dev_triton

    fast = DevStackOptions(engine="synthetic", synthetic_ttft_ms=0.0, synthetic_itl_ms=0.0, max_batch_size=64)
    results: dict[str, list[dict[str, float]]] = {style: [] for style in STYLES}
    with dev_triton(fast) as server:
        for _ in range(args.rounds):
            for style in STYLES:
                results[style].append(_child(server.grpc_url, style, str(server.model_dir), args, 0))
    held: dict[str, list[float]] = {style: [] for style in STYLES}
    if args.hold:
        slow = DevStackOptions(
            engine="synthetic",
            synthetic_itl_ms=60_000.0,
            max_batch_size=64,
            max_num_active=args.hold * len(STYLES) * args.rounds + 64,
        )
        with dev_triton(slow) as server:
            for _ in range(args.rounds):
                for style in STYLES:
                    held[style].append(
                        _child(server.grpc_url, style, str(server.model_dir), args, args.hold)["held_kb_per_request"]
                    )
    for style, runs in results.items():
        per_request = [r["cpu_us_per_request"] for r in runs]
        per_response = [r["cpu_us_per_response"] for r in runs]
        line = (
            f"{style}: client CPU per request {_median(per_request):.0f} µs median "
            f"({', '.join(f'{v:.0f}' for v in per_request)}), per response {_median(per_response):.1f} µs"
        )
        if held[style]:
            line += (
                f"; held open: {_median(held[style]):.1f} KB per request ({', '.join(f'{v:.1f}' for v in held[style])})"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
