"""Time every garbage collection of a process started with this folder first on PYTHONPATH (`bench.profile`).

With BENCH_GC_PROBE set to a folder, each process appends to `<folder>/gc-<pid>.txt`, at most once a second, a line
`wall_time process_cpu_s` followed by `collections cpu_s` for generations 0, 1 and 2 (totals since it started).
"""

import gc
import os
import time

_FOLDER = os.environ.get("BENCH_GC_PROBE")
_WRITE_EVERY_S = 1.0  # the probe stays out of the profile it serves

if _FOLDER:
    _path = os.path.join(_FOLDER, f"gc-{os.getpid()}.txt")
    _totals = [[0, 0.0], [0, 0.0], [0, 0.0]]
    _state = {"started": 0.0, "written": 0.0}

    def _on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _state["started"] = time.thread_time()
            return
        totals = _totals[info["generation"]]
        totals[0] += 1
        totals[1] += time.thread_time() - _state["started"]
        now = time.monotonic()
        if now - _state["written"] >= _WRITE_EVERY_S:
            _state["written"] = now
            fields = " ".join(f"{count} {seconds:.6f}" for count, seconds in _totals)
            with open(_path, "a") as f:
                f.write(f"{time.time():.3f} {time.process_time():.4f} {fields}\n")

    gc.callbacks.append(_on_collection)
