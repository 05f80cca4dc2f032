"""Processes: CPU pinning, CPU and RSS of process trees (psutil), waiting for HTTP readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Placement:
    """Which CPUs Triton, the front-end and the load generator run on (empty: anywhere)."""

    triton: tuple[int, ...] = ()
    frontend: tuple[int, ...] = ()
    loadgen: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Placement:
        """`auto`, `none`, or e.g. `triton=0;frontend=1;loadgen=1` (ranges like 0-7 allowed)."""
        if text == "none":
            return cls()
        if text == "auto":
            return cls.auto()
        fields: dict[str, tuple[int, ...]] = {}
        for part in text.split(";"):
            name, _, cpus = part.partition("=")
            fields[name.strip()] = _cpu_list(cpus)
        return cls(**fields)

    @classmethod
    def auto(cls) -> Placement:
        """2-3 CPUs: Triton anywhere, front-end and load generator on the last. More: half for Triton, a quarter
        each for the front-end and the load generator.

        Triton is not confined to one CPU on small machines: pinned to a single core, the r24.10 Python backend
        segfaults within a minute of streaming load (a cancellation-check race; see bench/README.md).
        """
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) < 2:
            return cls()
        if len(cpus) < 4:
            return cls(tuple(cpus), (cpus[-1],), (cpus[-1],))
        half, quarter = len(cpus) // 2, len(cpus) // 4
        return cls(tuple(cpus[:half]), tuple(cpus[half : half + quarter]), tuple(cpus[half + quarter :]))

    def describe(self) -> str:
        """Human-readable form."""
        if not (self.triton or self.frontend or self.loadgen):
            return "unpinned"
        show = ",".join
        return (
            f"triton={show(map(str, self.triton))};frontend={show(map(str, self.frontend))};"
            f"loadgen={show(map(str, self.loadgen))}"
        )


def _cpu_list(text: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for piece in text.split(","):
        if "-" in piece:
            low, high = piece.split("-")
            cpus += range(int(low), int(high) + 1)
        elif piece.strip():
            cpus.append(int(piece))
    return tuple(cpus)


def pinned(cpus: tuple[int, ...]) -> Callable[[], None] | None:
    """A preexec_fn that pins the child to `cpus` (None when unpinned)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, set(cpus))


@contextlib.contextmanager
def affinity(cpus: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Run the block with this thread pinned (children started inside inherit it)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class ProcessTree:
    """A root process and all its descendants, sampled together."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]

    def members(self) -> list[psutil.Process]:
        """The roots and their live descendants."""
        found: dict[int, psutil.Process] = {}
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    found[proc.pid] = proc
        return list(found.values())

    def cpu_times(self) -> dict[int, float]:
        """pid -> user+system CPU seconds."""
        times = {}
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                times[proc.pid] = t.user + t.system
        return times

    def rss(self) -> int:
        """Sum of resident set sizes in bytes (shared pages of several workers are counted in each)."""
        total = 0
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    @staticmethod
    def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds spent between two samples (processes born in between count whole)."""
        return sum(value - before.get(pid, 0.0) for pid, value in after.items())


class RssSampler:
    """Samples a tree's RSS in a thread; keeps the maximum."""

    def __init__(self, tree: ProcessTree, interval_s: float = 0.25) -> None:
        self._tree = tree
        self._interval = interval_s
        self._stop = threading.Event()
        self.max_rss = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.max_rss = max(self.max_rss, self._tree.rss())
            self._stop.wait(self._interval)


def wait_http_ok(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s ({last})")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
