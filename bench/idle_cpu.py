"""`python -m bench.idle_cpu`: the CPU a gateway worker and the floor spend per second while nothing streams.

At low request rates a front-end's CPU per request is mostly what it spends per second whatever happens (timers,
polls, grpc's threads), divided by the few requests of that second: a 64-stream run of 5-s non-streamed requests
makes 12.5 requests per second. This tool measures that part on its own. On the synthetic Triton with a 60-s
inter-token delay it starts one gateway worker (`--mode`) and, as the floor, a bare grpc.aio client of the same
Triton model (the requests the gateway sends, built by bench.triton_requests). Each process is measured by thread
over `--seconds`, twice: idle after one short request, then while `--held` requests wait for a token that does
not come. CPU is utime + stime from /proc; wake-ups are context switches.

    python -m bench.idle_cpu --mode ensemble --held 64 --seconds 20 --out bench/results/<name>.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.frontends import SERVED_MODEL, start_gateway
from bench.http_client import HttpConnection, HttpTarget
from bench.procs import Placement
from bench.prompts import make_prompts
from bench.spec import GATEWAY_MODES, Frontend
from bench.stack import TritonStack
from gateway.devstack.triton_server import free_port

REPO = Path(__file__).resolve().parent.parent
HELD_ITL_MS = 60_000.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadSample:
    """One thread's CPU ticks and context switches so far."""

    group: str
    ticks: int
    switches: int


def thread_group(pid: int, tid: int, name: str) -> str:
    """The group a thread is reported under: the event loop (the main thread), grpc's event engine, or its name."""
    if tid == pid:
        return "main thread (event loop)"
    if name.startswith("event_engine"):
        return "grpc event_engine threads"
    return f"{name} threads"


def sample_threads(pid: int) -> dict[int, ThreadSample]:
    """Every live thread of `pid`, by thread id."""
    samples = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        tid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        switches = sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
        samples[tid] = ThreadSample(thread_group(pid, tid, name), int(fields[11]) + int(fields[12]), switches)
    return samples


def per_second(
    before: dict[int, ThreadSample], after: dict[int, ThreadSample], seconds: float
) -> dict[str, tuple[float, float]]:
    """CPU ms and wake-ups per second by group, over the threads alive at the end (new ones count from zero)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for tid, end in after.items():
        start = before.get(tid, ThreadSample(end.group, 0, 0))
        totals[end.group][0] += (end.ticks - start.ticks) * 1000 / TICKS_PER_S / seconds
        totals[end.group][1] += (end.switches - start.switches) / seconds
    return {group: (cpu, wakes) for group, (cpu, wakes) in totals.items()}


def measure_window(pid: int, seconds: float) -> dict[str, tuple[float, float]]:
    """CPU and wake-ups per second of `pid`'s threads over the next `seconds`."""
    before = sample_threads(pid)
    time.sleep(seconds)
    return per_second(before, sample_threads(pid), seconds)


def report(mode: str, held: int, seconds: float, results: dict[str, dict[str, dict[str, tuple[float, float]]]]) -> str:
    """Markdown: per process and phase, CPU ms per second and wake-ups per second by thread group."""
    lines = [
        f"# CPU per second with nothing streaming: gateway/{mode}/w1 and its floor",
        "",
        f"- {seconds:g} s per window; idle after one short request, then with {held} non-streamed requests held open "
        f"(the synthetic engine's inter-token delay is {HELD_ITL_MS / 1000:g} s); CPU from /proc, in "
        f"{1000 / TICKS_PER_S:g}-ms ticks",
        "",
        "| process | phase | CPU ms per s, all threads | wake-ups per s | "
        "by thread group: CPU ms per s (wake-ups per s) |",
        "|---|---|---|---|---|",
    ]
    for process, phases in results.items():
        for phase, groups in phases.items():
            cpu = sum(value[0] for value in groups.values())
            wakes = sum(value[1] for value in groups.values())
            detail = "; ".join(
                f"{group} {value[0]:.1f} ({value[1]:.0f})"
                for group, value in sorted(groups.items(), key=lambda item: (-item[1][0], -item[1][1]))
            )
            lines.append(f"| {process} | {phase} | **{cpu:.1f}** | {wakes:.0f} | {detail} |")
    return "\n".join(lines) + "\n"


def _chat(target: HttpTarget, user_text: str, max_tokens: int) -> bytes:
    body = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": user_text}], "max_tokens": max_tokens}
    return target.request_bytes("/v1/chat/completions", json.dumps(body).encode(), {})


class _Answer:
    """A sink for one non-streamed answer."""

    def on_headers(self, status: int, now: float) -> None:
        if status != 200:
            raise RuntimeError(f"the gateway answered {status}")

    def on_event(self, event: str, data: bytes, now: float) -> None:
        raise RuntimeError("expected one body, got a stream")

    def on_body(self, body: bytes, now: float) -> None:
        """The answer (not kept)."""


async def _ask(target: HttpTarget, request: bytes) -> None:
    connection = await HttpConnection.open(target)
    try:
        await connection.exchange(request, _Answer())
    finally:
        connection.close()


async def _gateway_phases(
    url: str, pid: int, user_text: str, held: int, seconds: float
) -> dict[str, dict[str, tuple[float, float]]]:
    target = HttpTarget.parse(url)
    await _ask(target, _chat(target, user_text, 1))
    idle = await asyncio.to_thread(measure_window, pid, seconds)
    tasks = [asyncio.create_task(_ask(target, _chat(target, user_text, 256))) for _ in range(held)]
    await asyncio.sleep(2.0)  # every request is in Triton by now
    failed = [task for task in tasks if task.done()]
    if failed:
        raise RuntimeError(f"{len(failed)} held requests ended early: {failed[0].exception()!r}")
    busy = await asyncio.to_thread(measure_window, pid, seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"idle": idle, f"{held} held": busy}


def _floor_phases(
    grpc_url: str, model: str, model_dir: Path, held: int, seconds: float
) -> dict[str, dict[str, tuple[float, float]]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.idle_cpu", "--child-floor", grpc_url, model, str(model_dir), str(held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "idle":
            raise RuntimeError("the floor client did not start")
        idle = measure_window(child.pid, seconds)
        child.stdin.write("hold\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "held":
            raise RuntimeError("the floor client did not hold its requests")
        time.sleep(2.0)
        busy = measure_window(child.pid, seconds)
    finally:
        child.kill()
        child.wait()
    return {"idle": idle, f"{held} held": busy}


async def _floor_client(grpc_url: str, model: str, model_dir: str, held: int) -> None:
    """The floor: one grpc.aio channel, one short request, then `held` requests that wait (until killed)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    from bench.clients import FINAL
    from bench.triton_requests import build_request, model_config, upstream_codec
    from gateway.core.tokens import load_tokenizer

    config = model_config(grpc_url, model)
    tokenizer = load_tokenizer(model_dir) if model == GATEWAY_MODES["direct"] else None
    codec = upstream_codec(config, tokenizer)
    prompt = make_prompts(model_dir, 100, variants=1)[0]
    channel = grpc.aio.insecure_channel(grpc_url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    async def ask(max_tokens: int, request_id: str) -> None:
        message = build_request(codec, prompt, max_tokens, stream=False)
        message.id = request_id
        call = stub.ModelStreamInfer()
        await call.write(message)
        await call.done_writing()
        async for reply in call:
            final = reply.infer_response.parameters.get(FINAL)
            if reply.error_message or (final is not None and final.bool_param):
                return

    await ask(1, "warm-up")
    print("idle", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    tasks = [asyncio.create_task(ask(256, f"held-{i}")) for i in range(held)]
    print("held", flush=True)
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    """Start Triton, measure the gateway worker and the floor client, print the report (and write `--out`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(GATEWAY_MODES), default="ensemble")
    parser.add_argument("--held", type=int, default=64, help="non-streamed requests held open in the second window")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench" / "results" / "tmp" / "idle_cpu")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument(
        "--child-floor", nargs=4, metavar=("GRPC_URL", "MODEL", "MODEL_DIR", "HELD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child_floor:
        import uvloop

        url, model, model_dir, held = args.child_floor
        uvloop.run(_floor_client(url, model, model_dir, int(held)))
        return
    args.work_dir.mkdir(parents=True, exist_ok=True)
    stack = TritonStack(Placement(), args.work_dir, ttft_ms=20.0, itl_ms=HELD_ITL_MS, max_active=4 * args.held + 64)
    triton = stack.start()
    results: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    try:
        model = GATEWAY_MODES[args.mode]
        frontend = Frontend(f"gateway/{args.mode}/w1", "gateway", triton_model=model)
        gateway = start_gateway(frontend, triton.grpc_url, triton.model_dir, free_port(), (), args.work_dir)
        try:
            assert gateway.process is not None
            user_text = make_prompts(str(triton.model_dir), 100, variants=1)[0].user_text
            results[frontend.name] = asyncio.run(
                _gateway_phases(gateway.target, gateway.process.pid, user_text, args.held, args.seconds)
            )
        finally:
            gateway.stop()
        results[f"direct/{model}"] = _floor_phases(triton.grpc_url, model, triton.model_dir, args.held, args.seconds)
    finally:
        stack.stop()
    text = report(args.mode, args.held, args.seconds, results)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
