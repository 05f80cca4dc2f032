"""`python -m bench.drain_time`: how long Triton goes on working after a storm of stopped BLS requests, per route.

On the synthetic dev Triton (20 ms to the first token and between tokens), `--streams` clients stream 256-token
requests from the BLS (`tensorrt_llm_bls`) for `--seconds`, hang up, and send the `stop=true` requests a gateway
sends (bench.clients.stop_requests). Then it times how long until the engine runs nothing and until Triton's
processes are quiet (bench.runner.wait_quiet). Through `exec` the engine's sender waits for the BLS; over gRPC it
does not, and the BLS works off what queued up meanwhile (triton_repo/README.md, Known defects). The routes take
turns, round after round, each on a fresh Triton.

    python -m bench.drain_time --streams 256 --seconds 6 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
from dataclasses import dataclass

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.clients import stop_requests, triton_stream
from bench.procs import ProcessTree
from bench.prompts import make_prompts
from bench.runner import wait_idle, wait_quiet
from bench.triton_requests import encoded_requests
from bench.window import WindowStats
from gateway.devstack import DevStackOptions, dev_triton
from gateway.devstack.dev_model import ensure_dev_model

ROUTES = ("grpc", "exec")
BLS = "tensorrt_llm_bls"
OUTPUT_TOKENS = 256
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Drain:
    """One storm: tokens the clients read, stops refused, and seconds from the stops to an idle engine and to a
    quiet Triton."""

    route: str
    tokens: int
    stops_failed: int
    engine_idle_s: float
    triton_quiet_s: float


async def storm(grpc_url: str, templates: list[bytes], streams: int, seconds: float) -> tuple[int, int]:
    """`streams` direct clients (bench.clients.triton_stream) stream for `seconds`, then hang up and have their
    generations stopped: (tokens read, stops that failed)."""
    channel = grpc.aio.insecure_channel(grpc_url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    requests = [service_pb2.ModelInferRequest.FromString(template) for template in templates]
    now = time.monotonic()
    stats = WindowStats(now, now + seconds, trust_usage=True)
    inflight: set[str] = set()
    clients = [
        asyncio.create_task(
            triton_stream(stub, requests, index, streams, stats, stream=True, count=0, tag="drain", inflight=inflight)
        )
        for index in range(streams)
    ]
    await asyncio.sleep(seconds)
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    failed = await stop_requests(stub, inflight)
    await channel.close()
    return round(stats.tokens), failed


def drain(route: str, streams: int, seconds: float) -> Drain:
    """One storm on a fresh Triton whose BLS takes `route` to tensorrt_llm."""
    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=20, synthetic_itl_ms=20, bls_engine=route)
    with dev_triton(options) as triton:
        prompts = make_prompts(str(ensure_dev_model()), 100)
        encoded = encoded_requests(triton.grpc_url, BLS, prompts, OUTPUT_TOKENS, True, None)
        templates = [base64.b64decode(text) for text in encoded]
        tokens, failed = asyncio.run(storm(triton.grpc_url, templates, streams, seconds))
        stopped = time.monotonic()
        wait_idle(triton.metrics_url, TIMEOUT_S)
        engine_idle = time.monotonic() - stopped
        wait_quiet(ProcessTree([triton.process.pid]), TIMEOUT_S)
        return Drain(route, tokens, failed, engine_idle, time.monotonic() - stopped)


def summary(drains: list[Drain]) -> list[str]:
    """A line per route: medians (lowest–highest) over its storms."""

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})"

    lines = []
    for route in dict.fromkeys(d.route for d in drains):
        mine = [d for d in drains if d.route == route]
        lines.append(
            f"{route:5} {len(mine)} storm(s): engine idle after {spread([d.engine_idle_s for d in mine])}, "
            f"Triton quiet after {spread([d.triton_quiet_s for d in mine])}; "
            f"{statistics.median(d.tokens for d in mine):,.0f} tokens read, "
            f"{sum(d.stops_failed for d in mine)} stops failed"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_time", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=256, help="clients streaming from the BLS at once")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long they stream before hanging up")
    parser.add_argument("--rounds", type=int, default=2, help="storms per route (routes alternate)")
    parser.add_argument("--routes", default=",".join(ROUTES), help="the BLS's routes to tensorrt_llm: grpc, exec")
    args = parser.parse_args(argv)
    routes = args.routes.split(",")
    unknown = sorted(set(routes) - set(ROUTES))
    if unknown:
        parser.error(f"--routes: unknown {', '.join(unknown)} (grpc, exec)")
    drains = [drain(route, args.streams, args.seconds) for _ in range(args.rounds) for route in routes]
    print(f"{args.streams} streams of {OUTPUT_TOKENS}-token requests for {args.seconds:g} s, then stopped:")
    for line in summary(drains):
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
