"""`python -m bench.limits_cost`: what the keys' limits cost a request, without and with Redis on the same machine.

In-process (as bench.app_cost, the real app over an engine that answers at once): app CPU and wall time per
one-token streamed request with no keys, with a key without limits, with a key with every limit counted in the
process, and with the same limits in a real redis-server (started here; its own CPU per request too).
Configurations run in turn, round after round (interleaved), and medians are reported.

With `--streams N` (256 by default; 0 skips it) also end to end: the synthetic dev Triton, one gateway process
without keys and one with the key's limits in Redis, N closed-loop streams from bench.loadgen against each in
turn; time to first token p50 / p99, the gateway's and Redis's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from bench.app_cost import InstantEngine, _request
from bench.loadgen import GenSpec
from bench.procs import stop_process, wait_http_ok
from bench.stats import percentile
from gateway.app import create_app
from gateway.config import Settings
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.devstack import DevStackOptions, dev_triton, free_port
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model

KEY = "sk-bench-limits"
BIG = 10**12  # limits that are checked and charged, never reached
EVERY_LIMIT = {"requests_per_minute": BIG, "tokens_per_minute": BIG, "concurrent_requests": BIG,
               "tokens_per_day": BIG, "tokens_per_month": BIG}  # fmt: skip
CONFIGS = ("off", "key", "local", "redis")
_prompts = itertools.count()


def fresh_bodies(count: int, max_tokens: int) -> list[str]:
    """`count` chat bodies, each with a prompt no earlier body had (a 60-word message after its number): the
    gateway keeps the ids of the texts it tokenized last, and a real request's prompt is new to it."""
    bodies = []
    for _ in range(count):
        message = {"role": "user", "content": f"{next(_prompts)} " + "word " * 60}
        bodies.append(json.dumps({"model": DEV_MODEL_NAME, "messages": [message], "max_tokens": max_tokens,
                                  "stream": True}))  # fmt: skip
    return bodies


def write_keys(folder: Path, limited: bool) -> Path:
    """A keys file with the bench's key (every limit, or none)."""
    entry: dict[str, Any] = {"tenant": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "models": ["*"]}
    if limited:
        entry["limits"] = EVERY_LIMIT
    path = folder / ("limited.yaml" if limited else "open.yaml")
    path.write_text(yaml.safe_dump({"keys": [entry]}))
    return path


@contextmanager
def redis_server() -> Iterator[tuple[str, psutil.Process]]:
    """A redis-server on a free port (no persistence): its URL and process."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:  # until it answers: a gateway started before would count its first admission as an outage
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not answer within 10 s") from None
            time.sleep(0.05)
    client.close()
    try:
        yield f"redis://127.0.0.1:{port}/0", psutil.Process(process.pid)
    finally:
        process.kill()
        process.wait()


def cpu_s(process: psutil.Process) -> float:
    """A process's CPU seconds so far."""
    times = process.cpu_times()
    return times.user + times.system


def settings_for(config: str, folder: Path, redis_url: str) -> Settings:
    """The gateway's settings for one configuration (its store in `folder`, not the user's)."""
    state_dir = folder / f"state-{config}"
    if config == "off":
        return Settings(state_dir=state_dir)
    keys = write_keys(folder, limited=config != "key")
    return Settings(keys_file=keys, limits_url=redis_url if config == "redis" else None, state_dir=state_dir)


async def in_process(requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median app CPU, wall time and Redis CPU per one-token streamed request, per configuration."""
    tokenizer = load_tokenizer(ensure_dev_model())
    headers = ((b"authorization", f"Bearer {KEY}".encode()),)
    samples: dict[str, dict[str, list[float]]] = {c: {"cpu_us": [], "wall_us": [], "redis_us": []} for c in CONFIGS}
    with tempfile.TemporaryDirectory() as folder, redis_server() as (url, redis_process):
        apps = {}
        for config in CONFIGS:
            model = ServedModel(DEV_MODEL_NAME, InstantEngine(), ChatTemplate(tokenizer), TokenCounter(tokenizer), 16,
                                16)  # fmt: skip
            apps[config] = create_app(ModelRegistry([model]), settings_for(config, Path(folder), url))
        lifespans = AsyncExitStack()
        for app in apps.values():  # the lifespan starts the backends; then a warm-up
            await lifespans.enter_async_context(app.router.lifespan_context(app))
            for warm_up in fresh_bodies(50, 1):
                await _request(app, warm_up.encode(), headers=headers)
        for _ in range(rounds):
            for config, app in apps.items():
                bodies = [text.encode() for text in fresh_bodies(requests, 1)]
                redis_before, cpu_before, wall_before = cpu_s(redis_process), time.process_time(), time.perf_counter()
                for body in bodies:
                    await _request(app, body, headers=headers)
                await asyncio.sleep(0)  # the last settlement
                sample = samples[config]
                sample["cpu_us"].append((time.process_time() - cpu_before) / requests * 1e6)
                sample["wall_us"].append((time.perf_counter() - wall_before) / requests * 1e6)
                sample["redis_us"].append((cpu_s(redis_process) - redis_before) / requests * 1e6)
        await lifespans.aclose()
    return {config: {k: statistics.median(v) for k, v in s.items()} for config, s in samples.items()}


def run_load(url: str, streams: int, requests: int, output_tokens: int, folder: Path) -> dict[str, Any]:
    """`streams` closed-loop streams of `requests` requests each from a bench.loadgen process."""
    now = time.monotonic()
    spec = GenSpec(client="openai", target=url, stream=True, streams=streams, first_stream=0, total_streams=streams,
                   t_start=now + 1, ramp_s=1.0, window_start=0, window_end=0, requests_per_stream=requests,
                   bodies=fresh_bodies(streams * requests, output_tokens), headers={"Authorization": f"Bearer {KEY}"},
                   tokenizer_file=str(ensure_dev_model() / "tokenizer.json"))  # fmt: skip
    spec_path, result_path = folder / "spec.json", folder / "result.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    subprocess.run([sys.executable, "-m", "bench.loadgen", str(spec_path), str(result_path)], check=True)
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def start_gateway(grpc_url: str, extra: list[str], folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A gateway process in front of the dev Triton."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "--log-level", "warning", "serve", "--triton-url", grpc_url,
               "--tokenizer", str(ensure_dev_model()), "--served-model-name", DEV_MODEL_NAME, "--port", str(port),
               "--state-dir", str(folder / f"state-{port}"), *extra]  # fmt: skip
    log = (folder / f"gateway-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/health/ready", 120, process)
    return process, url


def end_to_end(streams: int, requests: int, rounds: int, output_tokens: int) -> dict[str, dict[str, float]]:
    """TTFT p50/p99 and CPU per request at `streams` streams: a gateway without keys, and one with Redis limits."""
    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=20, synthetic_itl_ms=20)
    samples: dict[str, dict[str, list[float]]] = {c: {"ttft_p50_ms": [], "ttft_p99_ms": [], "gateway_cpu_us": [],
                                                      "redis_cpu_us": []} for c in ("off", "redis")}  # fmt: skip
    with tempfile.TemporaryDirectory() as name, dev_triton(options) as triton, redis_server() as (url, redis_process):
        folder = Path(name)
        limited = ["--keys-file", str(write_keys(folder, True)), "--limits-url", url]
        gateways = {
            "off": start_gateway(triton.grpc_url, [], folder),
            "redis": start_gateway(triton.grpc_url, limited, folder),
        }
        try:
            for _ in range(rounds):
                for config, (process, gateway_url) in gateways.items():
                    gateway, redis_before = psutil.Process(process.pid), cpu_s(redis_process)
                    before = cpu_s(gateway)
                    result = run_load(gateway_url, streams, requests, output_tokens, folder)
                    assert not result["errors"], result.get("error_samples")
                    done = streams * requests
                    sample = samples[config]
                    sample["ttft_p50_ms"].append((percentile(result["ttft"], 0.5) or 0) * 1e3)
                    sample["ttft_p99_ms"].append((percentile(result["ttft"], 0.99) or 0) * 1e3)
                    sample["gateway_cpu_us"].append((cpu_s(gateway) - before) / done * 1e6)
                    sample["redis_cpu_us"].append((cpu_s(redis_process) - redis_before) / done * 1e6)
        finally:
            for process, _ in gateways.values():
                stop_process(process)
    return {config: {k: statistics.median(v) for k, v in s.items()} for config, s in samples.items()}


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="in-process requests per configuration and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (configurations interleaved); medians")
    parser.add_argument("--streams", type=int, default=256, help="end-to-end streams (0: skip the end-to-end part)")
    parser.add_argument("--stream-requests", type=int, default=8, help="requests per end-to-end stream")
    parser.add_argument("--output-tokens", type=int, default=16, help="tokens per end-to-end request")
    parser.add_argument("--e2e-rounds", type=int, default=3, help="end-to-end rounds (interleaved); medians")
    args = parser.parse_args()
    import uvloop

    costs = uvloop.run(in_process(args.requests, args.rounds))
    print(f"in-process, per one-token streamed request (median of {args.rounds} interleaved rounds):")
    for config, cost in costs.items():
        print(f"  {config:6} app CPU {cost['cpu_us']:6.0f} µs  wall {cost['wall_us']:6.0f} µs  "
              f"redis-server CPU {cost['redis_us']:5.1f} µs")  # fmt: skip
    if args.streams:
        results = end_to_end(args.streams, args.stream_requests, args.e2e_rounds, args.output_tokens)
        print(f"end to end, {args.streams} streams x {args.stream_requests} requests (median of {args.e2e_rounds}):")
        for config, cost in results.items():
            print(f"  {config:6} TTFT p50 {cost['ttft_p50_ms']:6.1f} ms  p99 {cost['ttft_p99_ms']:6.1f} ms  "
                  f"gateway CPU {cost['gateway_cpu_us']:6.0f} µs/request  redis-server CPU "
                  f"{cost['redis_cpu_us']:5.1f} µs/request")  # fmt: skip


if __name__ == "__main__":
    main()
