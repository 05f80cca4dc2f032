"""Where a held stream's memory goes in one gateway worker: RSS and live Python allocations per open stream.

Starts the synthetic Triton with slow tokens (so streams stay open), then one gateway worker at a time with
`bench/memory_probe` first on its PYTHONPATH. After a warm-up of short streams it takes the worker's RSS and a first
tracemalloc snapshot, opens N streams that keep reading their events, and once every one has its first token takes
both again. The RSS figure comes from a worker that is not traced (tracemalloc's own bookkeeping would inflate it),
the allocations from a second, traced worker under the same load. Target 5b of bench/README.md is the RSS figure
(< 50 MB per 1,000 streams); the allocation table says which layer holds what.

    python -m bench.stream_memory --streams 1000 --mode ensemble --frames 8 --out bench/results/<name>.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.frontends import SERVED_MODEL, start_gateway
from bench.http_client import HttpConnection, HttpTarget
from bench.procs import Placement
from bench.prompts import make_prompts
from bench.spec import GATEWAY_MODES, Frontend
from bench.stack import TritonStack
from gateway.devstack.triton_server import free_port

PROBE = Path(__file__).resolve().parent / "memory_probe"
REPO = Path(__file__).resolve().parent.parent
WARM_UP_STREAMS = 50
SNAPSHOT_TIMEOUT_S = 120.0
STDLIB = re.compile(r"/lib/python3\.\d+/(.+)$")


@dataclass(frozen=True)
class Growth:
    """What N open streams added to one worker."""

    streams: int
    rss_before: int
    rss_after: int

    @property
    def per_stream_kb(self) -> float:
        """RSS growth per stream, in KiB."""
        return (self.rss_after - self.rss_before) / 1024 / self.streams


@dataclass(frozen=True)
class Held:
    """Live Python allocations of one group (a package, a gateway module, a source line), per stream."""

    name: str
    kib: float
    blocks: float


def source_group(filename: str) -> str:
    """The package (site-packages), repository module (gateway/api/sse.py) or standard-library module an
    allocating line belongs to."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[-1].split("/")[0].removesuffix(".py")
    try:
        return Path(filename).resolve().relative_to(REPO).as_posix()
    except ValueError:
        stdlib = STDLIB.search(filename)
        return f"stdlib {stdlib.group(1)}" if stdlib else filename


def short_line(filename: str, lineno: int) -> str:
    """`group:line` for a source line (the group as `source_group` names it, with the file for packages)."""
    if "site-packages/" in filename:
        return f"{filename.split('site-packages/')[-1]}:{lineno}"
    return f"{source_group(filename)}:{lineno}"


def held_per_stream(changes: Iterable[tracemalloc.StatisticDiff], streams: int, group: bool) -> tuple[Held, list[Held]]:
    """The total and the largest holders per stream, by group (`group`) or by source line, largest first."""
    sizes: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    total_size = total_count = 0
    for change in changes:
        frame = change.traceback[0]
        key = source_group(frame.filename) if group else short_line(frame.filename, frame.lineno)
        sizes[key] += change.size_diff
        counts[key] += change.count_diff
        total_size += change.size_diff
        total_count += change.count_diff
    rows = [Held(key, sizes[key] / 1024 / streams, counts[key] / streams) for key in sizes]
    rows.sort(key=lambda row: row.kib, reverse=True)
    return Held("everything", total_size / 1024 / streams, total_count / streams), rows


def report(mode: str, growth: Growth, snapshots: tuple[Path, Path] | None, top: int) -> str:
    """Markdown: the RSS growth, then the live allocations by group and by line."""
    lines = [
        f"# Memory per held stream: gateway/{mode}/w1, {growth.streams} streams",
        "",
        f"- RSS of the worker (not traced): {growth.rss_before / 2**20:.1f} → {growth.rss_after / 2**20:.1f} MB, "
        f"**{growth.per_stream_kb:.1f} KB per stream** ({growth.per_stream_kb * 1000 / 1024:.1f} MB per 1,000)",
    ]
    if snapshots is not None:
        before, after = (tracemalloc.Snapshot.load(str(path)) for path in snapshots)
        changes = after.compare_to(before, "lineno")
        total, groups = held_per_stream(changes, growth.streams, group=True)
        _, by_line = held_per_stream(changes, growth.streams, group=False)
        lines.append(
            f"- Live Python allocations (tracemalloc, a traced worker under the same load): **{total.kib:.1f} KB per "
            f"stream** in {total.blocks:.0f} blocks; the rest of the RSS is C heap (grpc core's calls, uvloop's "
            "transports, httptools' parsers) and the allocators' slack"
        )
        for title, rows in (("package or module", groups), ("line", by_line)):
            lines += ["", f"| {title} | KB per stream | blocks per stream |", "|---|---|---|"]
            lines += [f"| {row.name} | {row.kib:.2f} | {row.blocks:.1f} |" for row in rows[:top]]
    return "\n".join(lines) + "\n"


class _FirstToken:
    """An SSE sink that notes the first event of its stream and ignores the rest."""

    def __init__(self, started: list[int]) -> None:
        self._started = started
        self._seen = False

    def on_headers(self, status: int, now: float) -> None:
        if status != 200:
            raise RuntimeError(f"the gateway answered {status}")

    def on_event(self, event: str, data: bytes, now: float) -> None:
        if not self._seen:
            self._seen = True
            self._started.append(1)

    def on_body(self, body: bytes, now: float) -> None:
        raise RuntimeError(f"expected a stream, got {body[:200]!r}")


async def _stream(target: HttpTarget, request: bytes, started: list[int]) -> None:
    connection = await HttpConnection.open(target)
    try:
        await connection.exchange(request, _FirstToken(started))
    finally:
        connection.close()


async def _open_streams(target: HttpTarget, request: bytes, count: int) -> list[asyncio.Task[None]]:
    """`count` streams, returned once each has its first token (or failed)."""
    started: list[int] = []
    tasks = [asyncio.create_task(_stream(target, request, started)) for _ in range(count)]
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    while len(started) < count and time.monotonic() < deadline:
        failed = [task for task in tasks if task.done() and task.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} streams failed: {failed[0].exception()!r}")
        await asyncio.sleep(0.2)
    if len(started) < count:
        raise TimeoutError(f"only {len(started)} of {count} streams had a first token in {SNAPSHOT_TIMEOUT_S:.0f} s")
    return tasks


def take_snapshot(pid: int, folder: Path) -> Path:
    """Signal the probe in `pid` and wait for the snapshot it writes."""
    taken = len(list(folder.glob(f"snapshot-{pid}-*.done")))
    os.kill(pid, signal.SIGUSR1)
    stem = folder / f"snapshot-{pid}-{taken}"
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    while not stem.with_suffix(".done").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot from {pid} in {SNAPSHOT_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    return stem.with_suffix(".pickle")


def chat_request(target: HttpTarget, user_text: str, max_tokens: int) -> bytes:
    """A streamed chat completion request for `user_text`."""
    body = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": user_text}],
            "max_tokens": max_tokens, "stream": True}  # fmt: skip
    return target.request_bytes("/v1/chat/completions", json.dumps(body).encode(), {})


async def _measure(
    url: str, pid: int, user_text: str, streams: int, folder: Path | None
) -> tuple[Growth, tuple[Path, Path] | None]:
    target = HttpTarget.parse(url)
    worker = psutil.Process(pid)
    warm_up = await _open_streams(target, chat_request(target, user_text, 2), WARM_UP_STREAMS)
    await asyncio.gather(*warm_up)
    request = chat_request(target, user_text, 256)
    before = worker.memory_info().rss
    first = take_snapshot(pid, folder) if folder is not None else None
    tasks = await _open_streams(target, request, streams)
    await asyncio.sleep(1.0)  # every stream has had a token or two more
    after = worker.memory_info().rss
    second = take_snapshot(pid, folder) if folder is not None else None
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    snapshots = (first, second) if first is not None and second is not None else None
    return Growth(streams, before, after), snapshots


def _worker_run(
    args: argparse.Namespace, triton: Any, folder: Path, traced: bool
) -> tuple[Growth, tuple[Path, Path] | None]:
    """Start one gateway worker (traced or not), measure it under the held streams, stop it."""
    frontend = Frontend(
        f"gateway/{args.mode}/w1", "gateway", triton_model=GATEWAY_MODES[args.mode], source=args.source or ""
    )
    gateway = start_gateway(frontend, triton.grpc_url, triton.model_dir, free_port(), (), folder)
    try:
        prompt = make_prompts(str(triton.model_dir), args.prompt_tokens, variants=1)[0]
        assert gateway.process is not None
        growth, snapshots = asyncio.run(
            _measure(gateway.target, gateway.process.pid, prompt.user_text, args.streams, folder if traced else None)
        )
    finally:
        gateway.stop()
    return growth, snapshots


def main(argv: list[str] | None = None) -> None:
    """Measure, print the report, and write it to `--out` if given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="streams held open at once")
    parser.add_argument("--mode", choices=sorted(GATEWAY_MODES), default="ensemble")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation (0: RSS only)")
    parser.add_argument("--itl-ms", type=float, default=500.0, help="the synthetic engine's time between tokens")
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument("--top", type=int, default=15, help="rows of each allocation table")
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench" / "results" / "tmp" / "stream_memory")
    parser.add_argument("--source", help="a folder holding another `gateway/` package to measure (a baseline version)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    stack = TritonStack(Placement(), args.work_dir, ttft_ms=20.0, itl_ms=args.itl_ms, max_active=2 * args.streams + 64)
    for old in args.work_dir.glob("snapshot-*"):
        old.unlink()
    triton = stack.start()
    # Every gateway started from here on loads the probe (it stays idle until it is signalled).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")]))
    os.environ["BENCH_MEMORY_PROBE"] = str(args.work_dir)
    os.environ["BENCH_MEMORY_FRAMES"] = str(args.frames)
    try:
        growth, _ = _worker_run(args, triton, args.work_dir, traced=False)
        snapshots = _worker_run(args, triton, args.work_dir, traced=True)[1] if args.frames > 0 else None
    finally:
        stack.stop()
    text = report(args.mode, growth, snapshots, args.top)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
