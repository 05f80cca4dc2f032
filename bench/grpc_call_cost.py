"""`python -m bench.grpc_call_cost`: client CPU per `ModelStreamInfer` request, stub call against one-batch call.

The gateway opens each Triton call as unary-stream (request, metadata and half-close in one batch); the stub's
stream-stream call (what `tritonclient.grpc.aio` and the benchmark's direct client use) needs three batches:
open, write, done_writing. This measures both with a bare grpc.aio client on the synthetic dev Triton (no
time to first token, no inter-token delay, 8 output tokens, one response each), alternating, each in a fresh
process so neither warms the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

STYLES = ("stream-stream", "unary-stream")


async def _measure(grpc_url: str, style: str, concurrency: int, seconds: float, model_dir: str) -> dict[str, float]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from bench.clients import FINAL
    from bench.prompts import make_prompts
    from bench.triton_requests import build_request, model_config, upstream_codec
    from gateway.engine.triton import STREAM_INFER_METHOD

    codec = upstream_codec(model_config(grpc_url, "ensemble"), None)
    message = build_request(codec, make_prompts(model_dir, 100)[0], 8, False)
    channel = grpc.aio.insecure_channel(grpc_url)
    stub_call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer
    one_batch_call = channel.unary_stream(
        STREAM_INFER_METHOD,
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
    )
    done = 0

    async def one_request() -> None:
        if style == "stream-stream":
            call = stub_call()
            await call.write(message)
            await call.done_writing()
        else:
            call = one_batch_call(message)
        async for reply in call:
            final = reply.infer_response.parameters.get(FINAL)
            if reply.error_message or (final is not None and final.bool_param):
                break

    async def closed_loop(until: float) -> None:
        nonlocal done
        while time.monotonic() < until:
            await one_request()
            done += 1

    await asyncio.gather(*(closed_loop(time.monotonic() + 1.0) for _ in range(concurrency)))  # warm-up
    done = 0
    started = time.process_time()
    await asyncio.gather(*(closed_loop(time.monotonic() + seconds) for _ in range(concurrency)))
    cpu = time.process_time() - started
    await channel.close()
    return {"requests": done, "cpu_us_per_request": cpu / done * 1e6}


def main() -> int:
    """Start the synthetic Triton, measure each call style `--rounds` times in alternation."""
    p = argparse.ArgumentParser(prog="python -m bench.grpc_call_cost", description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", nargs=3, metavar=("GRPC_URL", "STYLE", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import uvloop

        url, style, model_dir = args.child
        print(json.dumps(uvloop.run(_measure(url, style, args.concurrency, args.seconds, model_dir))))
        return 0

    from gateway.devstack import DevStackOptions, dev_triton

    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=0.0, synthetic_itl_ms=0.0, max_batch_size=64)
    results: dict[str, list[float]] = {style: [] for style in STYLES}
    with dev_triton(options) as server:
        for _ in range(args.rounds):
            for style in STYLES:
                command = [
                    *(sys.executable, "-m", "bench.grpc_call_cost"),
                    *("--concurrency", str(args.concurrency), "--seconds", str(args.seconds)),
                    *("--child", server.grpc_url, style, str(server.model_dir)),
                ]
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
                results[style].append(json.loads(out.splitlines()[-1])["cpu_us_per_request"])
    for style, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{style}: client CPU per request {min(values):.0f} µs best, {sorted(values)[len(values) // 2]:.0f} "
              f"median ({shown})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
