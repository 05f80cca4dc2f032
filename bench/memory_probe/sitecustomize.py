"""Snapshot a process's live Python allocations on SIGUSR1 (`bench.stream_memory`).

A process started with this folder first on PYTHONPATH and BENCH_MEMORY_PROBE set to a folder answers each SIGUSR1
with a full garbage collection and `<folder>/snapshot-<pid>-<n>.pickle` (a tracemalloc snapshot), then an empty
`<folder>/snapshot-<pid>-<n>.done`. The first signal also starts tracemalloc (BENCH_MEMORY_FRAMES frames per
allocation, 1 by default): start-up is not slowed, and only what is allocated from that moment is traced.
"""

import gc
import os
import signal
import tracemalloc

_FOLDER = os.environ.get("BENCH_MEMORY_PROBE")

if _FOLDER:
    _taken = [0]

    def _snapshot(signum: int, frame: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(int(os.environ.get("BENCH_MEMORY_FRAMES", "1")))
        gc.collect()
        stem = os.path.join(_FOLDER, f"snapshot-{os.getpid()}-{_taken[0]}")
        tracemalloc.take_snapshot().dump(stem + ".pickle")
        open(stem + ".done", "w").close()
        _taken[0] += 1

    signal.signal(signal.SIGUSR1, _snapshot)
