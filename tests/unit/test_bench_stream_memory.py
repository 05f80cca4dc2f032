"""bench.stream_memory: the probe snapshots a live process on a signal, and what is held is split per stream."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from bench.stream_memory import PROBE, REPO, Growth, held_per_stream, report, source_group, take_snapshot

STREAMS = 200
BLOCK = 10_000


def test_source_groups_name_the_package_the_repository_module_or_the_standard_library_module() -> None:
    assert source_group("/x/.venv/lib/python3.11/site-packages/uvicorn/protocols/http/h11_impl.py") == "uvicorn"
    assert source_group("/x/.venv/lib/python3.12/site-packages/six.py") == "six"
    assert source_group(str(REPO / "gateway" / "api" / "sse.py")) == "gateway/api/sse.py"
    assert source_group("/usr/lib/python3.12/asyncio/locks.py") == "stdlib asyncio/locks.py"


def _hold_blocks(held: list[bytes]) -> None:
    held.extend(bytes(BLOCK) for _ in range(STREAMS))


def test_what_is_held_is_divided_per_stream_by_line_and_by_module() -> None:
    held: list[bytes] = []
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        _hold_blocks(held)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    changes = after.compare_to(before, "lineno")

    total, lines = held_per_stream(changes, STREAMS, group=False)
    assert lines[0].name.startswith("tests/unit/test_bench_stream_memory.py:")
    assert lines[0].kib == pytest.approx(BLOCK / 1024, rel=0.05)
    assert lines[0].blocks == pytest.approx(1.0, abs=0.05)
    assert total.kib >= lines[0].kib

    _, modules = held_per_stream(changes, STREAMS, group=True)
    assert modules[0].name == "tests/unit/test_bench_stream_memory.py"


def test_the_probe_snapshots_a_running_process_and_the_report_reads_the_snapshots(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(PROBE), BENCH_MEMORY_PROBE=str(tmp_path), BENCH_MEMORY_FRAMES="1")
    script = (
        "import sys, time\n"
        "held = []\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        f"    held.extend(bytes({BLOCK}) for _ in range({STREAMS}))\n"
        "    print('holding', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == "ready\n"
        first = take_snapshot(process.pid, tmp_path)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline() == "holding\n"
        second = take_snapshot(process.pid, tmp_path)
    finally:
        process.kill()
        process.wait()

    text = report("ensemble", Growth(STREAMS, 100 * 2**20, 100 * 2**20 + STREAMS * 40 * 1024), (first, second), top=3)
    assert "**40.0 KB per stream**" in text
    held = next(line for line in text.splitlines() if "Live Python allocations" in line)
    kib = float(held.split("**")[1].split()[0])
    assert BLOCK / 1024 <= kib < BLOCK / 1024 + 1  # the blocks the process made after the first snapshot
    assert "| <string> | " in text  # the module table names where they were allocated
