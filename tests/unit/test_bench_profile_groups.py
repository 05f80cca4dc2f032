"""bench.profile_groups: py-spy's collapsed stacks counted by layer, and the gateway against the floor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.profile_groups import (
    THREADS,
    GcTime,
    comparison_table,
    gc_between,
    gc_line,
    group_of_stack,
    profile_tables,
    read_collapsed,
)

MAIN = "<module> (gateway/__main__.py:7);Runner.run (asyncio/runners.py:118)"


def test_python_frames_are_grouped_by_their_file_and_gateway_frames_by_module() -> None:
    assert group_of_stack([MAIN, "send (uvicorn/protocols/http/httptools_impl.py:544)"]).startswith("HTTP server")
    assert group_of_stack([MAIN, "_read (grpc/aio/_call.py:384)"]).startswith("grpc.aio")
    assert group_of_stack([MAIN, "encode (gateway/api/sse.py:40)"]) == "gateway api/sse.py"
    assert group_of_stack([MAIN, "inc (prometheus_client/values.py:28)"]).startswith("metrics")
    assert group_of_stack(["x (/opt/repo/bench/clients.py:9)"]) == "the direct client's loop (bench/)"


def test_c_code_counts_for_the_python_line_that_called_it() -> None:
    assert group_of_stack([MAIN, "chunk (gateway/openai/encoders.py:57)"]) == "gateway openai/encoders.py"
    assert group_of_stack([MAIN]) == "event loop (asyncio, uvloop)"  # uvloop's C loop under Runner.run


def test_a_thread_beside_the_event_loop_is_one_group() -> None:
    assert group_of_stack(["Thread._bootstrap (threading.py:1002)", "Thread.run (threading.py:982)"]) == THREADS


def test_shares_become_microseconds_per_token_and_the_floor_is_subtracted(tmp_path: Path) -> None:
    gateway = tmp_path / "gateway.txt"
    gateway.write_text(
        f'process 1:"python -m gateway";thread (0x1);{MAIN};send (uvicorn/protocols/http/h.py:1) 50\n'
        f"{MAIN};_read (grpc/aio/_call.py:384) 30\n"
        f"{MAIN};encode (gateway/api/sse.py:40) 20\n"
    )
    floor = tmp_path / "floor.txt"
    floor.write_text(
        f"{MAIN};_read (grpc/aio/_call.py:384) 60\n<module> (bench/loadgen.py:1);x (bench/clients.py:2) 40\n"
    )
    ours, theirs = read_collapsed(gateway), read_collapsed(floor)
    assert ours.total == 100 and ours.share("gateway api/sse.py") == 0.2
    tables = profile_tables(ours, us_per_token=100.0, tokens_per_request=256)
    assert "| HTTP server (uvicorn, h11, httptools) | 50.0% | 50.0 | 12800.0 |" in tables
    assert any(line.startswith("| `encode (gateway/api/sse.py:40)` | 20.0%") for line in tables)
    rows = comparison_table(ours, 100.0, theirs, 50.0, tokens_per_request=1)
    assert rows[2] == "| HTTP server (uvicorn, h11, httptools) | 50.0 | 0.0 | +50.0 |"
    assert "| grpc.aio (Python and Cython) | 30.0 | 30.0 | +0.0 |" in rows
    assert rows[-1] == "| **all** | 100.0 | 50.0 | **+50.0** |"


def test_the_gc_probe_times_the_collections_of_a_process_that_has_it_on_its_path(tmp_path: Path) -> None:
    probe = Path(__file__).resolve().parents[2] / "bench" / "gc_probe"
    code = "import gc, time\nfor _ in range(4):\n    gc.collect()\n    time.sleep(0.55)\n"  # it writes once a second
    env = {**os.environ, "PYTHONPATH": str(probe), "BENCH_GC_PROBE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (written,) = tmp_path.glob("gc-*.txt")
    lines = written.read_text().splitlines()
    assert len(lines) >= 2
    gc_time = gc_between(written, start=float(lines[0].split()[0]), end=time.time())
    assert gc_time is not None and gc_time.collections[2] >= 1  # gc.collect() is a generation-2 collection


def test_gc_time_between_two_moments_becomes_microseconds_per_token(tmp_path: Path) -> None:
    probe = tmp_path / "gc-1.txt"
    probe.write_text(
        "100.0 1.0 10 0.01 1 0.002 0 0.0\n105.0 3.0 30 0.03 3 0.006 1 0.1\n111.0 5.0 50 0.05 5 0.01 2 0.3\n"
    )
    gc_time = gc_between(probe, start=101.0, end=112.0)
    assert gc_time == GcTime(collections=(40, 4, 2), seconds=(0.04, 0.008, 0.3), process_cpu_s=4.0)
    line = gc_line(gc_time, us_per_token=100.0, tokens_per_request=256)
    assert "8.7% of the process's CPU, 8.7 µs per token (2227 per request)" in line
    assert "2 collections" not in line and "40 / 4 / 2, taking 40 / 8 / 300 ms" in line
    assert gc_between(probe, start=99.0, end=112.0) is None  # no line before the start: cannot tell
