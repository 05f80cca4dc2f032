"""Soak: thousands of mixed requests with random disconnects and invalid inputs against the real Triton.

Reports the 5xx count (must be 0), upstream requests left running afterwards (must be 0, read from the dev
engine's gauge on Triton's /metrics) and the gateway's RSS before and after. Not part of CI:

    python -m bench.soak --requests 5000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from gateway.devstack import DevStackOptions, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

RESULTS = Path(__file__).parent / "results"
INVALID_BODIES: list[bytes] = [
    b'{"model": "trtllm-dev", "messages": [',
    b'{"model": "trtllm-dev", "messages": [{"role": "wizard", "content": "x"}]}',
    b'{"model": "trtllm-dev", "prompt": "x", "max_tokens": -5}',
    b'{"model": "nope", "prompt": "x"}',
    b'{"model": "trtllm-dev", "prompt": "x", "n": 4}',
    b"[1, 2, 3]",
    b'{"model": "trtllm-dev", "prompt": "\xff\xfe invalid utf-8"}',
    b'{"model": "trtllm-dev", "prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


def running_upstream(metrics_url: str) -> float:
    """Requests the dev engine is still generating."""
    text = httpx.get(metrics_url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("dev_engine_running"))


async def one_request(client: httpx.AsyncClient, gateway: GatewayProcess, rng: random.Random) -> str:
    """A random request; returns an outcome label (status code, or 'disconnect')."""
    roll = rng.random()
    if roll < 0.10:
        body = rng.choice(INVALID_BODIES)
        response = await client.post(
            f"{gateway.v1}/completions", content=body, headers={"content-type": "application/json"}
        )
        return str(response.status_code)
    stream = roll < 0.6
    payload: dict[str, object] = {"model": gateway.model, "max_tokens": rng.randint(1, 64), "stream": stream}
    if rng.random() < 0.5:
        path, payload["messages"] = "/chat/completions", [{"role": "user", "content": f"soak {rng.random()}"}]
    else:
        path, payload["prompt"] = "/completions", f"soak {rng.random()}"
    if rng.random() < 0.2:
        payload["stop"] = [rng.choice(["a", "the", "\n", "é"])]
    disconnect_after = rng.randint(1, 10) if stream and rng.random() < 0.25 else None
    async with client.stream("POST", f"{gateway.v1}{path}", json=payload) as response:
        if disconnect_after is None:
            await response.aread()
            return str(response.status_code)
        seen = 0
        async for _ in response.aiter_raw():
            seen += 1
            if seen >= disconnect_after:
                return "disconnect"
        return str(response.status_code)


async def soak(gateway: GatewayProcess, requests: int, concurrency: int, seed: int) -> collections.Counter[str]:
    """Run `requests` requests with `concurrency` workers."""
    rng = random.Random(seed)
    outcomes: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def worker() -> None:
        # A fresh connection per request, so that client-side disconnects are real TCP closes.
        while not queue.empty():
            queue.get_nowait()
            async with httpx.AsyncClient(timeout=120) as client:
                try:
                    outcomes[await one_request(client, gateway, rng)] += 1
                except httpx.HTTPError as exc:
                    outcomes[f"client error {type(exc).__name__}"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def main() -> int:
    """Run the soak and write its report to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=5)
    with dev_triton(options) as triton, tempfile.TemporaryDirectory() as logs:
        gateway = start_gateway(triton, Path(logs))
        process = psutil.Process(gateway.process.pid)
        try:
            rss_before = process.memory_info().rss
            started = time.monotonic()
            outcomes = asyncio.run(soak(gateway, args.requests, args.concurrency, args.seed))
            elapsed = time.monotonic() - started
            time.sleep(1.0)
            leaked = running_upstream(triton.metrics_url)
            rss_after = process.memory_info().rss
        finally:
            stop_gateway(gateway)
    server_errors = sum(n for outcome, n in outcomes.items() if outcome.startswith("5"))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {psutil.cpu_count()} cpus",
        "command": " ".join(["python", "-m", "bench.soak", *sys.argv[1:]]),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "server_errors_5xx": server_errors,
        "leaked_upstream_requests": leaked,
        "gateway_rss_mb_before": round(rss_before / 2**20, 1),
        "gateway_rss_mb_after": round(rss_after / 2**20, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if server_errors == 0 and leaked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
