"""Where sampled CPU goes: py-spy's collapsed stacks grouped by layer, in µs per token and per request.

A sample counts for its innermost frame's file: the HTTP server, the event loop, grpc.aio, the gateway's modules
one by one, JSON, metrics, ... C code (orjson, grpc's Cython core, uvloop, the socket syscalls) has no frame of its
own in py-spy's default sampling, so its time counts for the Python line that called it (uvicorn's `send` holds the
socket write). Samples of threads beside the event loop (grpc's poller, executors) form one group of their own.
(`py-spy --native` would name the C frames, but it stops the process for every sample: on the 2-core VM that
halved the gateway's throughput and put most samples on syscalls, so it is not offered here.)
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

THREADS = "threads beside the event loop (grpc poller, executors)"
OTHER = "other"
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("HTTP server (uvicorn, h11, httptools)", ("uvicorn/", "h11/", "httptools/")),
    ("grpc.aio (Python and Cython)", ("grpc/",)),
    ("protobuf", ("google/protobuf",)),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop/")),
    ("JSON (the json module; orjson counts for its caller)", ("json/",)),
    ("pydantic", ("pydantic",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("starlette / fastapi / anyio", ("starlette/", "fastapi/", "anyio/")),
    ("chat template (jinja2)", ("jinja2/",)),
    ("tokenizers / transformers", ("transformers/", "tokenizers/")),
    ("the direct client's loop (bench/)", ("bench/",)),
]


def _location(frame: str) -> str:
    """`function (file.py:line)` -> file.py:line."""
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else ""


def group_of_frame(frame: str) -> str:
    """The group one frame belongs to, by its file."""
    path = _location(frame).rsplit(":", 1)[0]
    if "gateway/" in path:
        return "gateway " + path[path.rindex("gateway/") + len("gateway/") :]
    return next((name for name, needles in GROUPS if any(n in path for n in needles)), OTHER)


def group_of_stack(frames: list[str]) -> str:
    """The group of a sample: its innermost frame's; a thread beside the event loop as a whole."""
    if any(frame.startswith("Thread._bootstrap (") for frame in frames):
        return THREADS
    return group_of_frame(frames[-1])


@dataclass
class Samples:
    """Sample counts of one recording, by group, by leaf frame and inclusive per gateway frame."""

    total: int = 0
    groups: collections.Counter[str] = field(default_factory=collections.Counter)
    leaves: collections.Counter[str] = field(default_factory=collections.Counter)
    gateway_inclusive: collections.Counter[str] = field(default_factory=collections.Counter)

    def share(self, group: str) -> float:
        """The group's share of the samples."""
        return self.groups[group] / self.total if self.total else 0.0


def read_collapsed(path: Path) -> Samples:
    """Count py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    samples = Samples()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames or not count_text.isdigit():
            continue
        count = int(count_text)
        samples.total += count
        samples.groups[group_of_stack(frames)] += count
        samples.leaves[frames[-1]] += count
        for frame in set(frames):
            if "gateway/" in _location(frame):
                samples.gateway_inclusive[frame] += count
    return samples


def _us(share: float, us_per_unit: float | None) -> str:
    return f"{share * us_per_unit:.1f}" if us_per_unit else "–"


def profile_tables(samples: Samples, us_per_token: float | None, tokens_per_request: int, top: int = 15) -> list[str]:
    """Markdown: µs per token and per request by group (self time), the top leaf frames, the top inclusive
    gateway frames."""
    per_request = us_per_token * tokens_per_request if us_per_token else None
    lines = [f"{samples.total} samples (active threads only).", ""]
    lines += ["| group (self time) | share | µs per token | µs per request |", "|---|---|---|---|"]
    for name, count in samples.groups.most_common():
        share = count / samples.total
        lines.append(f"| {name} | {share:.1%} | {_us(share, us_per_token)} | {_us(share, per_request)} |")
    tables = (("top frames (self time)", samples.leaves), ("gateway frames (inclusive)", samples.gateway_inclusive))
    for title, counts in tables:
        lines += ["", f"| {title} | share | µs per token |", "|---|---|---|"]
        for frame, count in counts.most_common(top):
            share = count / samples.total
            lines.append(f"| `{frame}` | {share:.1%} | {_us(share, us_per_token)} |")
    return lines


def comparison_table(
    gateway: Samples, gateway_us: float | None, floor: Samples, floor_us: float | None, tokens_per_request: int
) -> list[str]:
    """Markdown: per group, the gateway's and the floor's µs per token (and per request), and the difference."""
    if not gateway_us or not floor_us:
        return ["(no CPU per token for one of the two runs: nothing to compare)"]
    unit = "request" if tokens_per_request > 1 else "token"
    scale = float(tokens_per_request)
    lines = [
        f"| group (self time) | gateway µs per {unit} | direct client µs per {unit} | above the floor |",
        "|---|---|---|---|",
    ]
    names = sorted(
        set(gateway.groups) | set(floor.groups),
        key=lambda n: gateway.share(n) * gateway_us - floor.share(n) * floor_us,
        reverse=True,
    )
    for name in names:
        ours, theirs = gateway.share(name) * gateway_us * scale, floor.share(name) * floor_us * scale
        lines.append(f"| {name} | {ours:.1f} | {theirs:.1f} | {ours - theirs:+.1f} |")
    total = (gateway_us - floor_us) * scale
    lines.append(f"| **all** | {gateway_us * scale:.1f} | {floor_us * scale:.1f} | **{total:+.1f}** |")
    return lines


@dataclass(frozen=True)
class GcTime:
    """Garbage collections of one process between two moments: count and CPU seconds per generation."""

    collections: tuple[int, int, int]
    seconds: tuple[float, float, float]
    process_cpu_s: float

    @property
    def share(self) -> float:
        """GC's share of the process's CPU."""
        return sum(self.seconds) / self.process_cpu_s if self.process_cpu_s > 0 else 0.0


def gc_between(path: Path, start: float, end: float) -> GcTime | None:
    """From bench/gc_probe's file of a process: the collections between two wall-clock moments (None: too few
    lines to tell)."""
    rows = [[float(x) for x in line.split()] for line in path.read_text().splitlines() if line.strip()]
    before = [row for row in rows if row[0] <= start]
    inside = [row for row in rows if start < row[0] <= end]
    if not before or not inside:
        return None
    first, last = before[-1], inside[-1]
    return GcTime(
        collections=(int(last[2] - first[2]), int(last[4] - first[4]), int(last[6] - first[6])),
        seconds=(last[3] - first[3], last[5] - first[5], last[7] - first[7]),
        process_cpu_s=last[1] - first[1],
    )


def gc_line(gc_time: GcTime | None, us_per_token: float | None, tokens_per_request: int) -> str:
    """Markdown: what garbage collection took, within the samples above (py-spy charges it to whatever frame
    allocated when a collection started)."""
    if gc_time is None or not us_per_token:
        return "Garbage collection: not measured (no gc_probe lines around the recording)."
    per_token = gc_time.share * us_per_token
    counts = " / ".join(str(n) for n in gc_time.collections)
    took = " / ".join(f"{s * 1000:.0f}" for s in gc_time.seconds)
    return (
        f"Garbage collection (gc.callbacks, within the figures above): {gc_time.share:.1%} of the process's CPU, "
        f"{per_token:.1f} µs per token ({per_token * tokens_per_request:.0f} per request); collections of "
        f"generation 0 / 1 / 2: {counts}, taking {took} ms."
    )
