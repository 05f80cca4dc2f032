"""Where the gateway's time to first token goes at concurrency 1: a request's stages in one gateway worker.

Starts the synthetic Triton and one gateway worker with `bench/stage_probe` first on its PYTHONPATH, sends
sequential streamed chat completions over one keep-alive connection (one at a time, a pause between them), and
notes when each request was sent and when its first content arrived. The probe notes when the request reaches each
stage in the worker (uvicorn, each middleware, the route, the chat template, the gRPC call, the first response,
the first write); both clocks are the system's monotonic clock. The table gives each stage's median time and
lowest–highest quartiles over the requests after the warm-up. Target 2a of bench/README.md is about the TTFT the
gateway adds over a direct gRPC client; this says which part of the way adds it.

    python -m bench.ttft_stages --requests 60 --out bench/results/<name>.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.frontends import SERVED_MODEL, start_gateway
from bench.http_client import HttpConnection, HttpTarget
from bench.procs import Placement
from bench.prompts import make_prompts
from bench.spec import GATEWAY_MODES, Frontend
from bench.stack import TritonStack
from gateway.devstack.triton_server import free_port

PROBE = Path(__file__).resolve().parent / "stage_probe"
REPO = Path(__file__).resolve().parent.parent
DUMP_TIMEOUT_S = 30.0
PAUSE_MS = 50.0  # between requests, by default
# The marks a streamed chat completion passes, in order (bench/stage_probe/sitecustomize.py). "write" is the
# first send of the response (its headers); "written" the last send done before the first content arrived.
CHAIN = (
    "bytes in", "headers parsed", "app task", "telemetry middleware", "body middleware", "admission", "routing",
    "route", "body validated", "template", "template done", "response built", "gRPC call", "gRPC call made",
    "response in", "write", "written",
)  # fmt: skip
UPSTREAM_SEGMENT = ("gRPC call made", "response in")


@dataclass(frozen=True)
class Request:
    """One request as the client saw it."""

    sent: float
    first_content: float


class _FirstContent:
    """An SSE sink that notes when the first event with content arrived."""

    def __init__(self) -> None:
        self.first: float | None = None

    def on_headers(self, status: int, now: float) -> None:
        if status != 200:
            raise RuntimeError(f"the gateway answered {status}")

    def on_event(self, event: str, data: bytes, now: float) -> None:
        if self.first is None and data != b"[DONE]":
            choices = json.loads(data).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                self.first = now

    def on_body(self, body: bytes, now: float) -> None:
        raise RuntimeError(f"expected a stream, got {body[:200]!r}")


async def _send_sequentially(target: HttpTarget, request: bytes, count: int, pause_s: float) -> list[Request]:
    connection = await HttpConnection.open(target)
    requests = []
    try:
        for _ in range(count):
            sink = _FirstContent()
            sent = time.monotonic()
            await connection.exchange(request, sink)
            if sink.first is None:
                raise RuntimeError("a response had no content")
            requests.append(Request(sent, sink.first))
            await asyncio.sleep(pause_s)
    finally:
        connection.close()
    return requests


def timeline(notes: list[tuple[str, float]], request: Request, until: float) -> list[tuple[str, float]]:
    """The request's marks in CHAIN order: each the first of its name after the one before (the last "written"
    before the first content), from the notes between its sending and `until` (the next request's sending)."""
    mine = [(mark, at) for mark, at in notes if request.sent <= at < until]
    points = [("sent", request.sent)]
    for mark in CHAIN:
        after = points[-1][1]
        if mark == "written":
            found = [at for name, at in mine if name == mark and after <= at <= request.first_content]
            at = found[-1] if found else None
        else:
            at = next((at for name, at in mine if name == mark and at >= after), None)
        if at is None:
            raise ValueError(f"no '{mark}' after '{points[-1][0]}': the probe and CHAIN disagree")
        points.append((mark, at))
    points.append(("first content at the client", request.first_content))
    return points


def segments(timelines: list[list[tuple[str, float]]]) -> list[tuple[str, list[float]]]:
    """(segment "a → b", its µs per request) in order, then the totals."""
    rows: list[tuple[str, list[float]]] = []
    for index in range(1, len(timelines[0])):
        label = f"{timelines[0][index - 1][0]} → {timelines[0][index][0]}"
        rows.append((label, [(line[index][1] - line[index - 1][1]) * 1e6 for line in timelines]))
    upstream = f"{UPSTREAM_SEGMENT[0]} → {UPSTREAM_SEGMENT[1]}"
    ttft = [(line[-1][1] - line[0][1]) * 1e6 for line in timelines]
    waited = dict(rows)[upstream]
    rows.append(("TTFT at the client", ttft))
    rows.append(("TTFT less the wait for Triton's first response", [t - w for t, w in zip(ttft, waited, strict=True)]))
    return rows


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def report(
    mode: str, requests: int, warm_up: int, rows: list[tuple[str, list[float]]], pause_ms: float = PAUSE_MS
) -> str:
    """The markdown table."""
    lines = [
        f"# Time to first token by stage: gateway/{mode}/w1, concurrency 1",
        "",
        f"- {requests} sequential streamed chat completions (8 tokens) over one connection, {pause_ms:g} ms "
        f"apart; the first {warm_up} are left out",
        "- µs per request: median (lower–upper quartile)",
        "",
        "| from → to | µs, median (quartiles) |",
        "|---|---|",
    ]
    for label, values in rows:
        low, median, high = _quartiles(values)
        lines.append(f"| {label} | {median:,.1f} ({low:,.1f}–{high:,.1f}) |")
    return "\n".join(lines) + "\n"


def _dump_notes(pid: int, path: Path) -> list[tuple[str, float]]:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + DUMP_TIMEOUT_S
    while True:
        try:
            return [(mark, at) for mark, at in json.loads(path.read_text())]
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no notes from {pid} in {DUMP_TIMEOUT_S:.0f} s") from None
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, and write it to `--out` if given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(GATEWAY_MODES), default="ensemble")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warm-up", type=int, default=10, help="first requests left out of the table")
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=PAUSE_MS,
        help="between one request's end and the next (0: back to back, the CPUs never idle)",
    )
    parser.add_argument(
        "--pin",
        default="auto",
        help="CPU placement as bench.run takes it (auto, none, or e.g. "
        "'triton=0;frontend=1;loadgen=0'); the client runs on the load generator's CPUs",
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench" / "results" / "tmp" / "ttft_stages")
    parser.add_argument("--source", help="a folder holding another `gateway/` package to measure (a baseline version)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.requests - args.warm_up < 4:
        parser.error("--requests must leave at least 4 requests after --warm-up")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    notes_path = args.work_dir / "stage-notes.json"
    placement = Placement.parse(args.pin)
    stack = TritonStack(placement, args.work_dir, ttft_ms=20.0, itl_ms=20.0, max_active=64)
    triton = stack.start()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")]))
    os.environ["BENCH_STAGE_PROBE"] = str(notes_path)
    frontend = Frontend(
        f"gateway/{args.mode}/w1", "gateway", triton_model=GATEWAY_MODES[args.mode], source=args.source or ""
    )
    try:
        gateway = start_gateway(
            frontend, triton.grpc_url, triton.model_dir, free_port(), placement.frontend, args.work_dir
        )
        try:
            if placement.loadgen:
                os.sched_setaffinity(0, placement.loadgen)
            prompt = make_prompts(str(triton.model_dir), args.prompt_tokens, variants=1)[0]
            target = HttpTarget.parse(gateway.target)
            body = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": prompt.user_text}],
                    "max_tokens": 8, "stream": True}  # fmt: skip
            request = target.request_bytes("/v1/chat/completions", json.dumps(body).encode(), {})
            requests = asyncio.run(_send_sequentially(target, request, args.requests, args.pause_ms / 1000))
            assert gateway.process is not None
            notes = _dump_notes(gateway.process.pid, notes_path)
        finally:
            gateway.stop()
    finally:
        stack.stop()
    ends = [later.sent for later in requests[1:]] + [float("inf")]
    kept = list(zip(requests, ends, strict=True))[args.warm_up :]
    rows = segments([timeline(notes, r, end) for r, end in kept])
    text = report(args.mode, args.requests, args.warm_up, rows, args.pause_ms)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
