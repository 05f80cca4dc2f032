"""`python -m bench.profile`: py-spy on one gateway worker under load and, with `--floor`, on the direct gRPC
client under the same load; where each one's CPU goes, by group, and what the gateway spends above the floor.

Writes profile-<target>.svg (flame graph), profile-<target>.txt (collapsed stacks) and profile.md (µs per token and
per request by group, from the same run's CPU per token; top frames; the comparison) into the output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.frontends import RunningFrontend, direct_frontend, start_gateway
from bench.procs import Placement
from bench.profile_groups import (
    GcTime,
    Samples,
    comparison_table,
    gc_between,
    gc_line,
    profile_tables,
    read_collapsed,
)
from bench.prompts import make_prompts
from bench.runner import SPAWN_MARGIN_S, execute
from bench.session import WARMUP, _attach, context
from bench.spec import GATEWAY_MODES, Frontend, LoadPoint, Timing
from bench.stack import TritonStack

logger = logging.getLogger("bench")
OUTPUT_TOKENS = 256
WORK_DIR = Path(__file__).resolve().parent / "results" / "tmp" / "profile"  # Triton's and the runs' logs
GC_PROBE = Path(__file__).resolve().parent / "gc_probe"  # a sitecustomize that times garbage collections


def _record(pid: int, seconds: float, rate: int, output: Path, fmt: str) -> None:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    done = subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
         "--nonblocking", "--format", fmt, "--output", str(output)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _loadgen_pid() -> int:
    """The load generator this process started (the direct client: the floor's own process)."""
    for child in psutil.Process().children(recursive=True):
        if "bench.loadgen" in " ".join(child.cmdline()):
            return child.pid
    raise RuntimeError("no load generator process to profile")


def _profile_once(
    stack: TritonStack, frontend: Frontend, placement: Placement, work_dir: Path, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Fresh Triton and front-end, the load, two py-spy recordings (flame graph, collapsed) inside the window."""
    from gateway.devstack import free_port

    stack.restart()
    ns = argparse.Namespace(streams_per_loadgen=1024, extra_body=None, no_usage=False)
    ctx = context(placement, work_dir, str(stack.server.model_dir), ns)
    _attach(ctx, stack)
    prompts = make_prompts(str(stack.server.model_dir), 100)
    running: RunningFrontend
    if frontend.kind == "direct":
        running = direct_frontend(frontend, stack.server.grpc_url)
    else:
        server = stack.server
        running = start_gateway(frontend, server.grpc_url, server.model_dir, free_port(), placement.frontend, work_dir)
    target = frontend.kind
    failures: list[BaseException] = []
    recorded: list[tuple[int, float, float]] = []  # the pid and wall-clock span of the collapsed recording
    try:
        execute(running, WARMUP, prompts, ctx, Timing())
        timing = Timing(ramp_s=3.0, warmup_s=3.0, measure_s=2 * args.seconds + 4.0)

        def record() -> None:
            try:
                time.sleep(SPAWN_MARGIN_S + timing.ramp_s + timing.warmup_s + 1.0)
                pid = running.process.pid if running.process else _loadgen_pid()
                _record(pid, args.seconds, args.rate, out / f"profile-{target}.svg", "flamegraph")
                started = time.time()
                _record(pid, args.seconds, args.rate, out / f"profile-{target}.txt", "raw")
                recorded.append((pid, started, time.time()))
            except Exception as exc:  # reported by the caller once the load has ended
                failures.append(exc)

        recorder = threading.Thread(target=record)
        recorder.start()
        point = LoadPoint(args.concurrency, 100, OUTPUT_TOKENS, not args.no_stream, label="profile")
        row = execute(running, point, prompts, ctx, timing)
        recorder.join()
    finally:
        running.stop()
    if failures:
        raise RuntimeError(f"profiling {frontend.name} failed") from failures[0]
    pid, started, ended = recorded[0]
    probe = WORK_DIR / f"gc-{pid}.txt"
    row["gc"] = gc_between(probe, started, ended) if probe.exists() else None
    return row


def _profile(stack: TritonStack, frontend: Frontend, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A clean run (the dev Triton can crash under load, see README): up to three attempts."""
    row: dict[str, Any] = {}
    for attempt in range(1, 4):
        row = _profile_once(stack, frontend, stack.placement, WORK_DIR, out, args)
        if stack.alive() and not row.get("errors"):
            break
        logger.warning("attempt %d: Triton died or requests failed (%s errors); again", attempt, row.get("errors"))
    return row


def _section(title: str, row: dict[str, Any], samples: Samples, tokens_per_request: int) -> list[str]:
    summary = {k: row.get(k) for k in ("tokens_per_s", "frontend_cpu_us_per_token", "errors")}
    us = row.get("frontend_cpu_us_per_token")
    gc_time: GcTime | None = row.get("gc")
    return [
        f"## {title}", "", f"Run: {json.dumps(summary)}.", "", gc_line(gc_time, us, tokens_per_request), "",
        *profile_tables(samples, us, tokens_per_request), "",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Profile the gateway (and with --floor the direct client) under load."""
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--mode", choices=sorted(GATEWAY_MODES), default="ensemble")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15.0, help="per recording (flame graph, then collapsed)")
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--no-stream", action="store_true", help="non-streamed requests (one response each)")
    p.add_argument("--floor", action="store_true", help="also profile the direct gRPC client under the same load")
    p.add_argument("--pin", default="auto")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    placement = Placement.parse(args.pin)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = GATEWAY_MODES[args.mode]
    frontends = [Frontend(f"gateway/{args.mode}/w1", "gateway", model)]
    if args.floor:
        frontends.append(Frontend(f"direct/{model}", "direct", model))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    # The gateway and the load generators inherit this: each of them times its garbage collections.
    os.environ["BENCH_GC_PROBE"] = str(WORK_DIR)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GC_PROBE), os.environ.get("PYTHONPATH")]))
    stack = TritonStack(placement, WORK_DIR, 20.0, args.itl_ms, 4096)
    try:
        rows = [_profile(stack, frontend, out, args) for frontend in frontends]
    finally:
        stack.stop()
    per_request = 1 if not args.no_stream else OUTPUT_TOKENS  # non-streamed: the cost is per request
    kind = "non-streamed requests" if args.no_stream else "streams"
    sampling = f"{args.rate} Hz, {args.seconds:.0f} s"
    lines = [
        f"# py-spy profile: {args.mode} mode, {args.concurrency} {kind}, {OUTPUT_TOKENS} tokens each",
        "",
        f"Placement {placement.describe()}; {sampling}; command `python -m bench.profile "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}`.",
        "",
    ]
    samples = [read_collapsed(out / f"profile-{frontend.kind}.txt") for frontend in frontends]
    if args.floor:
        us = [row.get("frontend_cpu_us_per_token") for row in rows]
        lines += ["## Above the floor", "", *comparison_table(samples[0], us[0], samples[1], us[1], per_request), ""]
    for frontend, row, counted in zip(frontends, rows, samples, strict=True):
        lines += _section(frontend.name, row, counted, OUTPUT_TOKENS)
    (out / "profile.md").write_text("\n".join(lines))
    logger.info("wrote %s", out / "profile.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
