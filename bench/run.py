"""`python -m bench.run --sweep quick|full`: every front-end on the same synthetic Triton; results in bench/results/.

Also `python -m bench.run --url http://host:port/v1 --model NAME --tokenizer DIR` for any OpenAI-compatible server.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.frontends import (
    RunningFrontend,
    direct_frontend,
    gateway_supports_workers,
    start_gateway,
    start_litellm,
    url_frontend,
)
from bench.procs import Placement, ProcessTree, affinity
from bench.prompts import Prompt, load_tokenizer, make_prompts
from bench.runner import RunContext, execute
from bench.spec import GATEWAY_MODES, SWEEPS, Frontend, LoadPoint, Sweep, Timing, as_dict

logger = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = LoadPoint(concurrency=4, prompt_tokens=100, output_tokens=16, stream=True, requests=8, label="warmup")


def frontends_for(sweep: Sweep, kinds: set[str]) -> list[Frontend]:
    """The sweep's front-ends, each direct floor first, then the gateway per mode and workers, then LiteLLM."""
    frontends: list[Frontend] = []
    for mode in sweep.gateway_modes:
        model = GATEWAY_MODES[mode]
        if "direct" in kinds:
            frontends.append(Frontend(f"direct/{model}", "direct", model))
        if "gateway" in kinds:
            frontends += [Frontend(f"gateway/{mode}/w{w}", "gateway", model, workers=w) for w in sweep.workers]
    if "litellm" in kinds and sweep.litellm:
        frontends.append(Frontend("litellm", "litellm", "ensemble"))
    return frontends


def load_points_for(frontend: Frontend, sweep: Sweep) -> list[LoadPoint]:
    """TTFT probe, the sweep's window runs, then the open-stream (RSS) runs for the ensemble front-ends."""
    points = []
    if sweep.ttft_probe_requests:
        points.append(LoadPoint(1, 100, sweep.ttft_probe_tokens, True, sweep.ttft_probe_requests, "ttft"))
    points += sweep.load_points()
    holds = frontend.triton_model == "ensemble" and frontend.workers == 1 and frontend.kind != "litellm"
    if holds or frontend.kind == "url":
        points += [LoadPoint(c, 100, sweep.output_tokens, True, label="hold") for c in sweep.hold_streams]
    return points


def _start(frontend: Frontend, triton: Any, ctx: RunContext, log_dir: Path, args: argparse.Namespace) -> RunningFrontend:
    cpus = ctx.placement.frontend
    from gateway.devstack import free_port

    if frontend.kind == "direct":
        return direct_frontend(frontend, triton.grpc_url)
    if frontend.kind == "gateway":
        return start_gateway(frontend, triton.grpc_url, triton.model_dir, free_port(), cpus, log_dir)
    if frontend.kind == "litellm":
        return start_litellm(frontend, triton.http_url, triton.model_dir, free_port(), cpus, log_dir)
    return url_frontend(frontend, args.api_key)


@contextlib.contextmanager
def _triton(args: argparse.Namespace, placement: Placement, log_dir: Path) -> Iterator[Any]:
    from gateway.devstack import DevStackOptions, dev_triton

    options = DevStackOptions(
        engine="synthetic",
        synthetic_ttft_ms=args.ttft_ms,
        synthetic_itl_ms=args.itl_ms,
        max_num_active=args.max_active,
        max_batch_size=64,
    )
    with affinity(placement.triton), dev_triton(options, work_dir=log_dir / "triton") as server:
        logger.info("Triton ready: grpc %s http %s (cpus %s)", server.grpc_url, server.http_url, placement.triton)
        yield server


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
        platform.processor(),
    )
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _run_frontend(
    frontend: Frontend,
    triton: Any,
    ctx: RunContext,
    sweep: Sweep,
    prompts: dict[int, list[Prompt]],
    out: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if frontend.kind == "gateway" and frontend.workers > 1 and not gateway_supports_workers():
        note = "skipped: `python -m gateway serve` has no --workers flag yet"
        logger.warning("%s: %s", frontend.name, note)
        return [{"frontend": frontend.name, "label": "skipped", "note": note}]
    logger.info("starting %s", frontend.name)
    running = _start(frontend, triton, ctx, ctx.work_dir, args)
    try:
        execute(running, WARMUP, prompts[100], ctx, sweep.timing)
        for point in load_points_for(frontend, sweep):
            if args.only_label and point.label not in args.only_label:
                continue
            started = time.monotonic()
            try:
                row = execute(running, point, prompts[point.prompt_tokens], ctx, sweep.timing)
            except Exception as exc:
                logger.error("%s %s failed: %s", frontend.name, point.key(), exc)
                row = {"frontend": frontend.name, "label": point.label, "concurrency": point.concurrency,
                       "prompt_tokens": point.prompt_tokens, "stream": point.stream, "failed": repr(exc)[:500]}  # fmt: skip
            rows.append(row)
            with (out / "runs.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            logger.info("%s %s %s: %s (%.0f s)", frontend.name, point.label, point.key(), report.one_line(row),
                        time.monotonic() - started)  # fmt: skip
    finally:
        running.stop()
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--sweep", choices=sorted(SWEEPS), default="quick")
    p.add_argument("--frontends", default="direct,gateway,litellm", help="subset of direct,gateway,litellm")
    p.add_argument("--modes", help="gateway upstream modes (ensemble,bls,direct); default: the sweep's")
    p.add_argument("--workers", help="gateway worker counts, e.g. 1,4; default: the sweep's")
    p.add_argument("--concurrency", help="e.g. 1,16,64; default: the sweep's")
    p.add_argument("--prompt-tokens", help="e.g. 100,2000; default: the sweep's")
    p.add_argument("--output-tokens", type=int, help="default: the sweep's (256)")
    p.add_argument("--stream", choices=["on", "off", "both"], help="default: the sweep's")
    p.add_argument("--hold", help="open-stream runs, e.g. 1024,2000 ('' for none); default: the sweep's")
    p.add_argument("--measure-s", type=float, help="measurement window per run")
    p.add_argument("--only-label", nargs="*", help="run only these kinds of points: ttft sweep hold")
    p.add_argument("--ttft-ms", type=float, default=20.0, help="synthetic engine time to first token")
    p.add_argument("--itl-ms", type=float, default=20.0, help="synthetic engine inter-token delay")
    p.add_argument("--max-active", type=int, default=4096, help="synthetic engine in-flight capacity")
    p.add_argument("--pin", default="auto", help="auto | none | 'triton=0;frontend=1;loadgen=1'")
    p.add_argument("--streams-per-loadgen", type=int, default=1024)
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<sweep>-<time>)")
    p.add_argument("--url", help="benchmark this OpenAI-compatible base URL instead of the built-in front-ends")
    p.add_argument("--model", default="trtllm-dev", help="model name for --url")
    p.add_argument("--api-key", help="bearer token for --url")
    p.add_argument("--tokenizer", help="tokenizer folder for prompts (default: the dev model)")
    p.add_argument("--extra-body", type=json.loads, help="JSON merged into every request body (e.g. ignore_eos)")
    p.add_argument("--no-usage", action="store_true", help="do not ask for stream_options.include_usage")
    return p.parse_args(argv)


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_sweep(args: argparse.Namespace) -> Sweep:
    """The named sweep with the command line's overrides."""
    base = SWEEPS[args.sweep]
    streams = {"on": (True,), "off": (False,), "both": (True, False)}.get(args.stream or "", base.streams)
    timing = Timing(base.timing.ramp_s, base.timing.warmup_s, args.measure_s or base.timing.measure_s)
    return Sweep(
        name=base.name,
        concurrencies=_ints(args.concurrency, base.concurrencies),
        prompt_tokens=_ints(args.prompt_tokens, base.prompt_tokens),
        streams=streams,
        output_tokens=args.output_tokens or base.output_tokens,
        ttft_probe_requests=base.ttft_probe_requests,
        ttft_probe_tokens=base.ttft_probe_tokens,
        hold_streams=_ints(args.hold, () if args.url else base.hold_streams),
        gateway_modes=tuple(args.modes.split(",")) if args.modes else base.gateway_modes,
        workers=_ints(args.workers, base.workers),
        litellm=base.litellm,
        timing=timing,
    )


def main(argv: list[str] | None = None) -> int:
    """Run a sweep and write its results."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sweep = build_sweep(args)
    placement = Placement.parse(args.pin)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{'url' if args.url else sweep.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    work_dir = RESULTS / "tmp" / out.name
    work_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "placement": placement.describe(),
        "sweep": as_dict(sweep),
        "synthetic_engine": {"ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms, "max_active": args.max_active},
        "gateway_workers_flag": gateway_supports_workers() if not args.url else None,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    logger.info("results in %s (placement %s)", out, placement.describe())
    rows: list[dict[str, Any]] = []
    try:
        if args.url:
            rows = _run_url(args, sweep, placement, out, work_dir)
        else:
            rows = _run_stack(args, sweep, placement, out, work_dir)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        report.write(out, meta, rows)
        logger.info("wrote %s", out)
    return 0


def _context(placement: Placement, work_dir: Path, model_dir: str, args: argparse.Namespace) -> RunContext:
    tokenizer = load_tokenizer(model_dir)
    return RunContext(
        placement=placement,
        work_dir=work_dir,
        tokenizer_file=str(Path(model_dir) / "tokenizer.json"),
        eos_id=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else -1,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        streams_per_loadgen=args.streams_per_loadgen,
        extra_body=args.extra_body,
        include_usage=not args.no_usage,
    )


def _run_stack(
    args: argparse.Namespace, sweep: Sweep, placement: Placement, out: Path, work_dir: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with _triton(args, placement, work_dir) as triton:
        model_dir = str(args.tokenizer or triton.model_dir)
        ctx = _context(placement, work_dir, model_dir, args)
        ctx.triton_grpc = triton.grpc_url
        ctx.triton_metrics = triton.metrics_url
        ctx.triton_tree = ProcessTree([triton.process.pid])
        prompts = {p: make_prompts(model_dir, p) for p in {100, *sweep.prompt_tokens}}
        for frontend in frontends_for(sweep, set(args.frontends.split(","))):
            rows += _run_frontend(frontend, triton, ctx, sweep, prompts, out, args)
    return rows


def _run_url(
    args: argparse.Namespace, sweep: Sweep, placement: Placement, out: Path, work_dir: Path
) -> list[dict[str, Any]]:
    if args.tokenizer:
        model_dir = args.tokenizer
    else:
        from gateway.devstack import default_cache_root
        from gateway.devstack.dev_model import ensure_dev_model

        model_dir = str(ensure_dev_model(default_cache_root()))
    ctx = _context(Placement(loadgen=placement.loadgen), work_dir, model_dir, args)
    prompts = {p: make_prompts(model_dir, p) for p in {100, *sweep.prompt_tokens}}
    frontend = Frontend("url", "url", url=args.url, model=args.model)
    return _run_frontend(frontend, None, ctx, sweep, prompts, out, args)


if __name__ == "__main__":
    raise SystemExit(main())
