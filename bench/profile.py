"""`python -m bench.profile`: py-spy on one gateway worker under streaming load; flame graph and top frames.

Writes profile.svg (flame graph), profile.txt (collapsed stacks) and profile.md (top frames, share per layer and
µs per delivered token, from the same run's CPU per token) into the output folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.frontends import start_gateway
from bench.procs import Placement
from bench.prompts import make_prompts
from bench.runner import SPAWN_MARGIN_S, execute
from bench.session import WARMUP, _attach, context
from bench.spec import GATEWAY_MODES, Frontend, LoadPoint, Timing
from bench.stack import TritonStack

logger = logging.getLogger("bench")

# Where a leaf frame's time goes, by the file it is in (first match wins).
LAYERS = [
    ("gateway engine (Triton gRPC, decoding)", ("gateway/engine/",)),
    ("gateway core (choices, stops, parsers, usage)", ("gateway/core/",)),
    ("gateway protocols (request decoding, chunks)", ("gateway/protocols/",)),
    ("gateway API (routes, SSE response)", ("gateway/api/",)),
    ("grpc.aio (C core, Cython)", ("grpc/",)),
    ("protobuf", ("google/protobuf",)),
    ("starlette / fastapi / anyio", ("starlette/", "fastapi/", "anyio/", "sse_starlette/")),
    ("uvicorn (httptools protocol)", ("uvicorn/",)),
    ("asyncio / event loop", ("asyncio/", "uvloop/")),
    ("pydantic", ("pydantic",)),
    ("chat template (jinja2)", ("jinja2/",)),
    ("tokenizers / transformers", ("transformers/", "tokenizers/")),
    ("threads outside the event loop (grpc poller, executors)", ("threading.py", "concurrent/futures")),
]


def layer_of(frame: str) -> str:
    """The layer a frame `function (path:line)` belongs to."""
    for name, needles in LAYERS:
        if any(n in frame for n in needles):
            return name
    return "other"


def analyse(collapsed: Path, us_per_token: float | None, top: int = 15) -> list[str]:
    """Markdown: share of samples per layer (self time), top leaf frames, top inclusive gateway frames."""
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf[frames[-1]] += count
        layers[layer_of(frames[-1])] += count
        for frame in set(frames):
            if "gateway/" in frame:
                inclusive[frame] += count

    def per_token(share: float) -> str:
        return f"{share * us_per_token:.1f}" if us_per_token else "–"

    lines = [f"{total} samples (active threads only).", ""]
    lines += ["| layer (self time) | share | µs per token |", "|---|---|---|"]
    for name, count in layers.most_common():
        lines.append(f"| {name} | {count / total:.1%} | {per_token(count / total)} |")
    lines += ["", "| top frames (self time) | share | µs per token |", "|---|---|---|"]
    for frame, count in leaf.most_common(top):
        lines.append(f"| `{frame}` | {count / total:.1%} | {per_token(count / total)} |")
    lines += ["", "| gateway frames (inclusive) | share | µs per token |", "|---|---|---|"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"| `{frame}` | {count / total:.1%} | {per_token(count / total)} |")
    return lines


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


def _profile_once(
    stack: TritonStack, frontend: Frontend, placement: Placement, work_dir: Path, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Fresh Triton and gateway, streaming load, two py-spy recordings during the window."""
    from gateway.devstack import free_port

    stack.restart()
    ns = argparse.Namespace(streams_per_loadgen=1024, extra_body=None, no_usage=False)
    ctx = context(placement, work_dir, str(stack.server.model_dir), ns)
    _attach(ctx, stack)
    prompts = make_prompts(str(stack.server.model_dir), 100)
    running = start_gateway(
        frontend, stack.server.grpc_url, stack.server.model_dir, free_port(), placement.frontend, work_dir
    )
    try:
        execute(running, WARMUP, prompts, ctx, Timing())
        timing = Timing(ramp_s=3.0, warmup_s=3.0, measure_s=2 * args.seconds + 4.0)
        pid = running.process.pid  # type: ignore[union-attr]

        def record() -> None:
            time.sleep(SPAWN_MARGIN_S + timing.ramp_s + timing.warmup_s + 1.0)
            _record(pid, args.seconds, args.rate, out / "profile.svg", "flamegraph")
            _record(pid, args.seconds, args.rate, out / "profile.txt", "raw")

        recorder = threading.Thread(target=record)
        recorder.start()
        point = LoadPoint(args.concurrency, 100, 256, not args.no_stream, label="profile")
        row = execute(running, point, prompts, ctx, timing)
        recorder.join()
        return row
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> int:
    """Profile the gateway under load."""
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--mode", choices=sorted(GATEWAY_MODES), default="ensemble")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15.0, help="per recording (flame graph, then collapsed)")
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--no-stream", action="store_true", help="non-streamed requests (one response each)")
    p.add_argument("--pin", default="auto")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    placement = Placement.parse(args.pin)
    out: Path = args.out
    work_dir = Path(__file__).resolve().parent / "results" / "tmp" / "profile"
    work_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    stack = TritonStack(placement, work_dir, 20.0, args.itl_ms, 4096)
    frontend = Frontend(f"gateway/{args.mode}/w1", "gateway", GATEWAY_MODES[args.mode])
    row: dict[str, Any] = {}
    try:
        for attempt in range(1, 4):  # the dev Triton can crash under load (see README); profile a clean run
            row = _profile_once(stack, frontend, placement, work_dir, out, args)
            if stack.alive() and not row.get("errors"):
                break
            logger.warning("attempt %d: Triton died or requests failed (%s errors); again", attempt, row.get("errors"))
    finally:
        stack.stop()
    us = row.get("frontend_cpu_us_per_token")
    kind = "non-streamed requests" if args.no_stream else "streams"
    summary: dict[str, Any] = {k: row.get(k) for k in ("tokens_per_s", "frontend_cpu_us_per_token", "errors")}
    lines = [
        f"# py-spy profile: {frontend.name}, {args.concurrency} {kind}, 256 tokens each",
        "",
        f"Run: {json.dumps(summary)}; placement {placement.describe()}; {args.rate} Hz, {args.seconds:.0f} s.",
        "",
        *analyse(out / "profile.txt", us),
        "",
    ]
    (out / "profile.md").write_text("\n".join(lines))
    logger.info("wrote %s", out / "profile.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
