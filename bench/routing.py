"""What routing is worth: a multi-turn chat workload over three dev Tritons with the prefix-cache model.

Each policy (`--policies`) gets the same workload through one gateway process in front of the same three
Tritons (synthetic engine; per instance an LRU of `--cache-blocks` KV blocks of `--block-size` tokens, and a
prefill lane at `--prefill-ms-per-token` per uncached prompt token, dev_engine_prefix_cache.py):
`--concurrency` conversations at a time, each of `--turns` turns, each opening with one of `--system-prompts`
shared system prompts of `--system-tokens` tokens, user messages of `--user-tokens` tokens and replies of
`--reply-tokens`. Conversation contents are salted per policy, so no run finds another's blocks cached.

Measured per policy: client-side TTFT p50/p99 (first content chunk), the cached share of prompt tokens
(`usage.prompt_tokens_details.cached_tokens`, i.e. the engine's `kv_cache_reused_blocks`), requests per
upstream and the peak in-flight imbalance sampled from the gateway's `gateway_upstream_in_flight`. Then the
routing cost per request, in-process: tokenizing and hashing the prompt's blocks plus the policy's choice.

    python -m bench.routing                       # the three policies, results in bench/results/routing-<date>/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.procs import stop_process, wait_http_ok
from bench.prompts import CORPUS, load_tokenizer
from bench.stats import percentile
from gateway.devstack import DevStackOptions, dev_triton, free_port
from gateway.engine.base import EngineInfo, GenerationRequest
from gateway.engine.pool import PoolConfig, UpstreamPool
from gateway.engine.upstreams import UpstreamSource

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Workload:
    """The conversations every policy is given."""

    conversations: int = 32
    concurrency: int = 16  # not a multiple of 3: closed-loop clients in lockstep would keep round robin sticky
    turns: int = 10
    system_prompts: int = 8
    system_tokens: int = 1000
    user_tokens: int = 60
    reply_tokens: int = 64
    block_size: int = 64
    cache_blocks: int = 320
    prefill_ms_per_token: float = 0.3
    ttft_ms: float = 5.0
    itl_ms: float = 20.0
    # Direct mode: on a small machine the CPU then goes to the engine model, not to the ensemble's per-token
    # Python postprocessing, so what differs between policies is the modelled prefill, not CPU contention.
    triton_model: str = "tensorrt_llm"


@dataclass
class PolicyResult:
    """What one policy's run measured."""

    policy: str
    requests: int = 0
    failed: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    per_upstream: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, float] = field(default_factory=dict)  # routing decisions by reason
    in_flight_sums: dict[str, float] = field(default_factory=dict)  # per upstream, summed over samples
    bound_exceeded_samples: int = 0  # samples where the busiest held more than ceil(1.25 x mean)
    samples: int = 0
    wall_s: float = 0.0

    def imbalance(self) -> float:
        """The busiest upstream's time-averaged in flight over the mean of all upstreams'."""
        sums = list(self.in_flight_sums.values())
        return max(sums) / (sum(sums) / len(sums)) if sums and sum(sums) else 0.0

    def summary(self) -> dict[str, object]:
        """The figures of the table."""
        return {
            "policy": self.policy,
            "requests": self.requests,
            "failed": self.failed,
            "ttft_p50_ms": round(percentile(self.ttft_ms, 50) or 0, 1),
            "ttft_p99_ms": round(percentile(self.ttft_ms, 99) or 0, 1),
            "cached_fraction": round(self.cached_tokens / self.prompt_tokens, 3) if self.prompt_tokens else None,
            "requests_per_upstream": sorted(int(v) for v in self.per_upstream.values()),
            "decisions": {reason: int(count) for reason, count in sorted(self.decisions.items())},
            "busiest_mean_in_flight_over_mean": round(self.imbalance(), 2),
            "samples_over_bound": f"{self.bound_exceeded_samples}/{self.samples}",
        }


def texts(tokenizer: object, count: int, tokens: int, salt: str) -> list[str]:
    """`count` distinct texts of about `tokens` tokens from the corpus, made unique by `salt`."""
    words = CORPUS.read_text().split()
    rng = random.Random(salt)
    out = []
    for index in range(count):
        start = rng.randrange(len(words))
        picked = " ".join((words[start:] + words[:start])[: tokens * 2])
        ids = tokenizer.encode(f"[{salt}-{index}] {picked}", add_special_tokens=False)[:tokens]  # type: ignore[attr-defined]
        out.append(tokenizer.decode(ids))  # type: ignore[attr-defined]
    return out


async def conversation(
    http: httpx.AsyncClient, url: str, system: str, users: list[str], load: Workload, result: PolicyResult
) -> None:
    """One conversation, turn after turn, streamed; records each turn's TTFT and usage."""
    messages = [{"role": "system", "content": system}]
    for user in users:
        messages.append({"role": "user", "content": user})
        body = {
            "model": "bench",
            "messages": messages,
            "max_tokens": load.reply_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        first: float | None = None
        reply: list[str] = []
        usage: dict[str, object] | None = None
        async with http.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                result.failed += 1
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        first = first or time.perf_counter()
                        reply.append(content)
        result.requests += 1
        if first is None or usage is None:
            result.failed += 1
            return
        result.ttft_ms.append((first - started) * 1000)
        result.prompt_tokens += int(usage["prompt_tokens"])  # type: ignore[call-overload]
        details = usage.get("prompt_tokens_details") or {}
        result.cached_tokens += int(details.get("cached_tokens") or 0)  # type: ignore[union-attr]
        messages.append({"role": "assistant", "content": "".join(reply)})


def in_flight(metrics_text: str) -> dict[str, float]:
    """gateway_upstream_in_flight per upstream."""
    values = {}
    for line in metrics_text.splitlines():
        if line.startswith("gateway_upstream_in_flight{"):
            labels, value = line.rsplit(" ", 1)
            values[labels.split('upstream="', 1)[1].split('"', 1)[0]] = float(value)
    return values


async def sample_load(gateway_url: str, result: PolicyResult, stop: asyncio.Event) -> None:
    """Every 50 ms: how unevenly the upstreams are loaded."""
    async with httpx.AsyncClient(timeout=5) as http:
        while not stop.is_set():
            loads = in_flight((await http.get(f"{gateway_url}/metrics")).text)
            total = sum(loads.values())
            for address, load in loads.items():
                result.in_flight_sums[address] = result.in_flight_sums.get(address, 0.0) + load
            if loads and total >= len(loads):
                result.samples += 1
                result.bound_exceeded_samples += max(loads.values()) > math.ceil(1.25 * total / len(loads))
            await asyncio.sleep(0.05)


async def drive(gateway_url: str, load: Workload, policy: str, model_dir: str) -> PolicyResult:
    """Run the conversations through the gateway at the given concurrency."""
    tokenizer = load_tokenizer(model_dir)
    systems = texts(tokenizer, load.system_prompts, load.system_tokens, f"{policy}-system")
    users = texts(tokenizer, load.conversations * load.turns, load.user_tokens, f"{policy}-user")
    result = PolicyResult(policy)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(load.conversations):
        queue.put_nowait(index)

    async def worker(http: httpx.AsyncClient, delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # conversations arrive over the first second, not all at once
        while not queue.empty():
            index = queue.get_nowait()
            own = users[index * load.turns : (index + 1) * load.turns]
            await conversation(
                http, f"{gateway_url}/v1/chat/completions", systems[index % len(systems)], own, load, result
            )

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_load(gateway_url, result, stop))
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=load.concurrency + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(worker(http, i / load.concurrency) for i in range(load.concurrency)))
    result.wall_s = time.perf_counter() - started
    stop.set()
    await sampler
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{gateway_url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("gateway_upstream_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            result.per_upstream[labels.split('upstream="', 1)[1].split('"', 1)[0]] = float(value)
        elif line.startswith("gateway_routing_decisions_total{"):
            labels, value = line.rsplit(" ", 1)
            result.decisions[labels.split('reason="', 1)[1].split('"', 1)[0]] = float(value)
    return result


def start_gateway(models_file: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway process (one worker) on the models file."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--models-file", str(models_file), "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/health/ready", 60, process)
    return process, url


class IdleEngine:
    """A ready engine that is never asked to generate (for timing the routing decision alone)."""

    def info(self) -> EngineInfo:
        """Always ready."""
        return EngineInfo(upstream="idle", model="idle", ready=True)

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""


async def routing_cost(model_dir: str, load: Workload, repeats: int = 2000) -> dict[str, float]:
    """Microseconds per request of each policy's decision, in-process (tokenizing and hashing included)."""
    tokenizer = load_tokenizer(model_dir)
    system = texts(tokenizer, 1, load.system_tokens, "cost-system")[0]
    turns = texts(tokenizer, 4, load.user_tokens, "cost-user")
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": system}] + [{"role": "user", "content": t} for t in turns],
        tokenize=False,
        add_generation_prompt=True,
    )
    # A prompt of its own per request (the last line differs): the gateway keeps the ids of the texts it tokenized
    # last, so one prompt asked for again would not be tokenized again, where a real request's prompt is new.
    requests = [
        GenerationRequest(request_id=f"cost-{i}", prompt=f"{prompt}{i}", max_tokens=1, stream=True)
        for i in range(repeats)
    ]
    sources = [UpstreamSource.parse(f"10.0.0.{i}:8001") for i in range(3)]
    costs = {"prompt_tokens": float(len(tokenizer.encode(prompt, add_special_tokens=False)))}
    for policy in ("round_robin", "least_outstanding", "power_of_two", "prefix_affinity"):
        config = PoolConfig(model="cost", policy=policy, block_size=load.block_size)  # type: ignore[arg-type]
        pool = UpstreamPool(config, sources, lambda _: IdleEngine(), tokenizer)  # type: ignore[arg-type,return-value]
        await pool.start()
        started = time.perf_counter()
        for request in requests:
            pool.choose(await pool.route_key(request))
        costs[policy] = round((time.perf_counter() - started) / repeats * 1e6, 1)
        await pool.close()
    started = time.perf_counter()
    for _ in range(repeats):
        tokenizer.backend_tokenizer.encode(prompt, add_special_tokens=False)
    costs["of which tokenizing"] = round((time.perf_counter() - started) / repeats * 1e6, 1)
    return costs


def markdown(load: Workload, results: list[PolicyResult], costs: dict[str, float], command: str) -> str:
    """summary.md."""
    rows = [r.summary() for r in results]
    header = list(rows[0])
    lines = [
        "# Routing over three dev Tritons: multi-turn chat with shared system prompts",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores; workload: {json.dumps(asdict(load))}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    by = {r.policy: r.summary() for r in results}
    if "round_robin" in by and "prefix_affinity" in by:
        ratio = by["round_robin"]["ttft_p50_ms"] / max(by["prefix_affinity"]["ttft_p50_ms"], 1e-9)  # type: ignore[operator]
        lines += ["", f"TTFT p50, round robin / prefix affinity: **{ratio:.2f}x** (target: at least 2x)"]
    lines += ["", "Routing cost per request, in-process, µs (3 upstreams): " + json.dumps(costs)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write bench/results/routing-<date>/."""
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.split("\n")[0])
    parser.add_argument("--policies", default="round_robin,least_outstanding,prefix_affinity")
    for name, value in asdict(Workload()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    load = Workload(**{name: getattr(args, name) for name in asdict(Workload())})
    out = args.out or RESULTS / f"routing-{time.strftime('%Y%m%d-%H%M')}"
    out.mkdir(parents=True, exist_ok=True)
    options = DevStackOptions(
        engine="synthetic",
        synthetic_ttft_ms=load.ttft_ms,
        synthetic_itl_ms=load.itl_ms,
        kv_block_size=load.block_size,
        kv_cache_blocks=load.cache_blocks,
        synthetic_prefill_ms_per_token=load.prefill_ms_per_token,
    )
    results = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-routing-") as work:
        tritons = [stack.enter_context(dev_triton(options)) for _ in range(3)]
        model_dir = str(tritons[0].model_dir)
        for policy in args.policies.split(","):
            models_file = Path(work) / f"{policy}.yaml"
            upstreams = json.dumps([t.grpc_url for t in tritons])
            models_file.write_text(
                f"models:\n  - name: bench\n    tokenizer: {model_dir}\n    upstreams: {upstreams}\n"
                f"    triton_model: {load.triton_model}\n"
                f"    routing: {{policy: {policy}, block_size: {load.block_size}}}\n"
            )
            process, url = start_gateway(models_file, Path(work) / f"{policy}.log")
            try:
                result = asyncio.run(drive(url, load, policy, model_dir))
            finally:
                stop_process(process)
            results.append(result)
            print(json.dumps(result.summary()), flush=True)
    costs = asyncio.run(routing_cost(model_dir, load))
    command = "python -m bench.routing " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "runs.json").write_text(
        json.dumps({"workload": asdict(load), "results": [asdict(r) for r in results], "routing_cost_us": costs})
    )
    (out / "summary.md").write_text(markdown(load, results, costs, command.strip()))
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
