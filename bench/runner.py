"""One measured run: spawn the load generators, sample the front-end's and Triton's CPU and RSS, aggregate."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from bench.frontends import RunningFrontend
from bench.loadgen import COMPLETION_WAIT_S, GenSpec
from bench.procs import Placement, ProcessTree, RssSampler, pinned
from bench.prompts import Prompt
from bench.spec import LoadPoint, Timing
from bench.stats import LogHistogram, percentile
from bench.triton_requests import encoded_requests

PROBE_TOKENS = 8  # output tokens of the latency probe's requests
SPAWN_MARGIN_S = 3.0  # load generators start and import before the first request is due
# After the window: the load generators' wait for a first completed stream, then cancellation and the result file.
LOADGEN_GRACE_S = COMPLETION_WAIT_S + 120.0
QUIET_CORES = 0.05  # Triton using less CPU than this over QUIET_SAMPLE_S is idle
QUIET_SAMPLE_S = 0.5


@dataclass
class RunContext:
    """What every run of a session shares."""

    placement: Placement
    work_dir: Path
    tokenizer_file: str
    tokenizer: Any  # the gateway's tokenizer of the model: the direct client's requests are built with it
    streams_per_loadgen: int = 1024
    triton_grpc: str = ""  # the Triton that direct clients call (empty: none)
    triton_metrics: str = ""  # for draining between runs (empty: no wait)
    triton_tree: ProcessTree | None = None
    extra_body: dict[str, Any] | None = None
    include_usage: bool = True


PROTOCOL_PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}


def _request_body(running: RunningFrontend, prompt: Prompt, point: LoadPoint, ctx: RunContext) -> str:
    """One request in the front-end's protocol. Responses are not stored (the store's cost is bench.store_cost's)."""
    protocol = running.frontend.protocol
    body: dict[str, Any] = {"model": running.model, "stream": point.stream}
    if protocol == "responses":
        body |= {"input": prompt.user_text, "max_output_tokens": point.output_tokens, "store": False}
    else:
        body |= {"messages": [{"role": "user", "content": prompt.user_text}], "max_tokens": point.output_tokens}
    if protocol == "chat" and point.stream and ctx.include_usage:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body | running.extra_body | (ctx.extra_body or {}))


def openai_path(base_url: str, protocol: str = "chat") -> str:
    """The protocol's path under a base URL (which may already end in /v1)."""
    return PROTOCOL_PATHS[protocol] if base_url.rstrip("/").endswith("/v1") else "/v1" + PROTOCOL_PATHS[protocol]


def engine_running(metrics_url: str) -> float:
    """Requests still in the dev engine, from Triton's metrics (0 when the gauge is absent)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("dev_engine_running_requests")
    )


def wait_idle(metrics_url: str, timeout_s: float) -> float:
    """Wait until the dev engine runs nothing; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if engine_running(metrics_url) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    raise TimeoutError(f"Triton still busy after {timeout_s:.0f} s")


def wait_quiet(tree: ProcessTree, timeout_s: float) -> float:
    """Wait until the processes use less than QUIET_CORES over QUIET_SAMPLE_S; returns the seconds waited. A model
    can go on working after the engine stops: the BLS on its gRPC route still reads what the engine sent for the
    previous run's cancelled requests (triton_repo/README.md, Known defects), which the next run must not pay for."""
    started = time.monotonic()
    before = tree.cpu_times()
    while True:
        time.sleep(QUIET_SAMPLE_S)
        after = tree.cpu_times()
        if ProcessTree.cpu_between(before, after) < QUIET_CORES * QUIET_SAMPLE_S:
            return time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            raise TimeoutError(f"Triton still busy after {timeout_s:.0f} s")
        before = after


def _specs(
    running: RunningFrontend, point: LoadPoint, prompts: list[Prompt], ctx: RunContext, timing: Timing
) -> list[GenSpec]:
    count_mode = point.requests > 0
    ramp = 0.0 if point.concurrency == 1 or count_mode else timing.ramp_s
    t_start = time.monotonic() + SPAWN_MARGIN_S
    window_start = t_start + ramp + (0.0 if count_mode else timing.warmup_s)
    window_end = window_start + (0.0 if count_mode else timing.measure_s)
    common: dict[str, Any] = {
        "client": running.client,
        "target": running.target,
        "stream": point.stream,
        "total_streams": point.concurrency,
        "t_start": t_start,
        "ramp_s": ramp,
        "window_start": window_start,
        "window_end": window_end,
        "requests_per_stream": math.ceil(point.requests / point.concurrency) if count_mode else 0,
        "trust_usage": running.trust_usage,
        "tokenizer_file": ctx.tokenizer_file,
        "cpus": list(ctx.placement.loadgen),
    }
    # A latency probe: one more stream of short requests, so that TTFT under load is sampled even when the
    # window is shorter than the closed-loop streams' requests.
    probe = None if count_mode or point.concurrency == 1 else replace(point, output_tokens=PROBE_TOKENS)
    if running.client == "triton":
        encode = functools.partial(encoded_requests, running.target, running.model, prompts, tokenizer=ctx.tokenizer)
        common["triton_requests"] = encode(point.output_tokens, point.stream)
        probe_requests = {"probe_triton_requests": encode(PROBE_TOKENS, point.stream)} if probe else {}
    else:
        common["protocol"] = running.frontend.protocol
        common["path"] = openai_path(running.target, running.frontend.protocol)
        common["headers"] = running.headers
        common["bodies"] = [_request_body(running, p, point, ctx) for p in prompts]
        probe_requests = {"probe_bodies": [_request_body(running, p, probe, ctx) for p in prompts]} if probe else {}
    processes = max(1, math.ceil(point.concurrency / ctx.streams_per_loadgen))
    specs = []
    first = 0
    for index in range(processes):
        streams = point.concurrency // processes + (1 if index < point.concurrency % processes else 0)
        extra = probe_requests if index == 0 else {}
        specs.append(GenSpec(streams=streams, first_stream=first, **common, **extra))
        first += streams
    return specs


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def execute(
    running: RunningFrontend, point: LoadPoint, prompts: list[Prompt], ctx: RunContext, timing: Timing
) -> dict[str, Any]:
    """Run one load point against a running front-end and return its row of results."""
    waited = wait_idle(ctx.triton_metrics, timing.idle_timeout_s) if ctx.triton_metrics else 0.0
    if running.metrics_url:  # a front-end with its own in-process Triton: drain its engines too
        waited += wait_idle(running.metrics_url, timing.idle_timeout_s)
    # The shared tritonserver idles while a front-end with its own Triton is measured: that front-end's tree is
    # the whole system, and the idle server's CPU counts as other processes'.
    triton_tree = None if running.own_triton else ctx.triton_tree
    if triton_tree is not None:
        waited += wait_quiet(triton_tree, timing.idle_timeout_s)
    frontend_tree = running.tree()
    rss_baseline = frontend_tree.rss() if frontend_tree else 0
    specs = _specs(running, point, prompts, ctx, timing)
    run_dir = ctx.work_dir / f"{running.frontend.name.replace('/', '_')}-{point.key()}-{point.label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    for index, spec in enumerate(specs):
        spec_path = run_dir / f"spec{index}.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        command = [sys.executable, "-m", "bench.loadgen", str(spec_path), str(run_dir / f"result{index}.json")]
        log = (run_dir / f"loadgen{index}.log").open("wb")
        processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pinned(ctx.placement.loadgen))
        )
    count_mode = point.requests > 0
    first = specs[0]
    with RssSampler(frontend_tree) if frontend_tree else _NoSampler() as sampler:
        _sleep_until(first.t_start if count_mode else first.window_start)
        fe0 = frontend_tree.cpu_times() if frontend_tree else {}
        tr0 = triton_tree.cpu_times() if triton_tree else {}
        sys0 = psutil.cpu_times(percpu=True)
        if not count_mode:
            _sleep_until(first.window_end)
            fe1 = frontend_tree.cpu_times() if frontend_tree else {}
            tr1 = triton_tree.cpu_times() if triton_tree else {}
            sys1 = psutil.cpu_times(percpu=True)
        deadline = time.monotonic() + LOADGEN_GRACE_S + (3600.0 if count_mode else 0.0)
        for process in processes:
            process.wait(max(1.0, deadline - time.monotonic()))
        if count_mode:
            fe1 = frontend_tree.cpu_times() if frontend_tree else {}
            tr1 = triton_tree.cpu_times() if triton_tree else {}
            sys1 = psutil.cpu_times(percpu=True)
    results = []
    for index, process in enumerate(processes):
        path = run_dir / f"result{index}.json"
        if process.returncode != 0 or not path.exists():
            log = (run_dir / f"loadgen{index}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"load generator {index} failed ({process.returncode}):\n{log}")
        results.append(json.loads(path.read_text()))
    row = aggregate(results, count_mode)
    frontend_cpu = ProcessTree.cpu_between(fe0, fe1) if frontend_tree else row["loadgen_cpu_s"]
    tokens = row["tokens"]
    row.update(
        {
            "frontend": running.frontend.name,
            "floor": running.frontend.floor,
            "label": point.label,
            "concurrency": point.concurrency,
            "prompt_tokens": point.prompt_tokens,
            "output_tokens": point.output_tokens,
            "stream": point.stream,
            "frontend_cpu_s": frontend_cpu,
            "frontend_cpu_us_per_token": frontend_cpu / tokens * 1e6 if tokens else None,
            "frontend_cpu_s_per_1k_tokens": frontend_cpu / tokens * 1e3 if tokens else None,
            "frontend_is_loadgen": frontend_tree is None,
            "triton_cpu_s": ProcessTree.cpu_between(tr0, tr1) if triton_tree else None,
            # The direct client is its own front-end: its RSS is the load generator's (first process).
            "rss_baseline_mb": (rss_baseline if frontend_tree else results[0]["rss_start"]) / 2**20,
            "rss_max_mb": (sampler.max_rss if frontend_tree else results[0]["rss_end"]) / 2**20,
            "idle_wait_s": waited,
        }
    )
    busy = [_busy(b) - _busy(a) for a, b in zip(sys0, sys1, strict=True)]
    ours = (0.0 if frontend_tree is None else frontend_cpu) + row["loadgen_cpu_s"] + (row["triton_cpu_s"] or 0.0)
    row["cpu_busy_per_core"] = [round(b / row["duration_s"], 3) for b in busy]
    row["foreign_cpu_s"] = max(0.0, sum(busy) - ours)  # CPU used by processes outside the benchmark
    row["triton_cpu_us_per_token"] = row["triton_cpu_s"] / tokens * 1e6 if tokens and row["triton_cpu_s"] else None
    row["loadgen_cpu_us_per_token"] = row["loadgen_cpu_s"] / tokens * 1e6 if tokens else None
    row["own_triton"] = running.own_triton
    row["system_cpu_s"] = system_cpu(frontend_cpu, row["triton_cpu_s"])
    row["system_cpu_us_per_token"] = row["system_cpu_s"] / tokens * 1e6 if tokens else None
    return row


def system_cpu(frontend_cpu_s: float, triton_cpu_s: float | None) -> float:
    """What serving cost the whole system: the front-end's tree (the load generator for the direct client) plus
    tritonserver's; a front-end that runs Triton in-process has no separate Triton (None), its tree is all of it."""
    return frontend_cpu_s + (triton_cpu_s or 0.0)


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class _NoSampler:
    max_rss = 0

    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def aggregate(results: list[dict[str, Any]], count_mode: bool) -> dict[str, Any]:
    """Merge the load generators' results into one row."""
    itl = LogHistogram()
    for result in results:
        itl.merge(LogHistogram.from_json(result["itl"]))
    ttft = [v for r in results for v in r["ttft"]]
    probe = [v for r in results for v in r.get("probe_ttft", [])]
    latency = [v for r in results for v in r["latency"]]
    start = min(r["measured_start"] for r in results)
    end = max(r["measured_end"] for r in results)
    duration = max(end - start, 1e-9)
    tokens = sum(r["tokens"] for r in results)

    def ms(value: float | None) -> float | None:
        return value * 1000.0 if value is not None else None

    return {
        "duration_s": duration,
        "tokens": tokens,
        "tokens_per_s": tokens / duration,
        "requests_started": sum(r["started"] for r in results),
        "requests_completed": sum(r["completed_in_window"] if not count_mode else r["completed"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "ttft_samples": len(ttft),
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p99_ms": ms(percentile(ttft, 99)),
        "latency_p50_ms": ms(percentile(latency, 50)),
        "probe_ttft_samples": len(probe),
        "probe_ttft_p50_ms": ms(percentile(probe, 50)),
        "probe_ttft_p99_ms": ms(percentile(probe, 99)),
        "itl_samples": itl.total,
        "itl_p50_ms": itl.percentile(50),
        "itl_p99_ms": itl.percentile(99),
        "max_open_streams": sum(r["max_open"] for r in results),
        "max_in_flight": sum(r["max_in_flight"] for r in results),
        "stops_sent": sum(r.get("stops_sent", 0) for r in results),
        "loadgen_processes": len(results),
        "loadgen_cpu_s": sum(r["cpu_s"] for r in results),
    }
