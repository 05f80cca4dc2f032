"""bench.session: a point is measured again after Triton or the front-end died during it, on fresh processes."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest

from bench import session as session_module
from bench.session import Session
from bench.spec import Frontend, LoadPoint


class FakeRunning:
    def __init__(self, number: int) -> None:
        self.number = number
        self.stopped = False
        self.dies = False
        self.process = None

    def exited(self) -> bool:
        return self.dies

    def stop(self) -> None:
        self.stopped = True


class FakeStack:
    def __init__(self) -> None:
        self.up = True
        self.starts = 1
        self.server = SimpleNamespace(grpc_url="g", metrics_url="m")

    def alive(self) -> bool:
        return self.up

    def restart(self) -> None:
        self.up = True
        self.starts += 1

    def tree(self) -> None:
        return None


@pytest.fixture
def bench_session(monkeypatch: pytest.MonkeyPatch) -> tuple[Session, FakeStack, list[FakeRunning], list[Any]]:
    stack = FakeStack()
    started: list[FakeRunning] = []
    measured: list[Any] = []

    def start(frontend: Frontend, *_: Any) -> FakeRunning:
        started.append(FakeRunning(len(started)))
        return started[-1]

    monkeypatch.setattr(session_module, "_start", start)
    monkeypatch.setattr(session_module, "execute", lambda running, point, *_: measured.append((running, point)) or {})
    bench = Session.__new__(Session)
    bench.args = argparse.Namespace(crash_retries=2)
    bench.sweep = SimpleNamespace(timing=None)
    bench.ctx = SimpleNamespace()
    bench.stack = stack  # type: ignore[assignment]
    bench.prompts = {100: []}
    return bench, stack, started, measured


POINT = LoadPoint(64, 100, 256, True)
FRONTEND = Frontend("gateway/ensemble/w1", "gateway", "ensemble")


def test_a_triton_crash_restarts_triton_and_the_frontend_and_measures_again(bench_session, monkeypatch) -> None:
    bench, stack, started, measured = bench_session
    first = FakeRunning(-1)
    crashes = iter([True])

    def crash_once(running: FakeRunning, point: LoadPoint, *_: Any) -> dict[str, Any]:
        measured.append((running, point))
        if point is POINT and next(crashes, False):
            stack.up = False
        return {}

    monkeypatch.setattr(session_module, "execute", crash_once)
    row, running = bench._measure(FRONTEND, first, POINT)  # type: ignore[arg-type]
    assert row["triton_crashes"] == 1 and row["frontend_crashes"] == 0 and "failed" not in row
    assert stack.starts == 2 and first.stopped
    assert running is started[-1] and not running.stopped
    assert [p for r, p in measured if p is POINT] == [POINT, POINT]  # the point again, on the new front-end
    assert measured[-1][0] is running


def test_a_frontend_that_exits_during_a_point_is_restarted_without_touching_triton(bench_session, monkeypatch) -> None:
    bench, stack, started, measured = bench_session
    first = FakeRunning(-1)

    def exit_once(running: FakeRunning, point: LoadPoint, *_: Any) -> dict[str, Any]:
        measured.append((running, point))
        if running is first:
            first.dies = True
        return {}

    monkeypatch.setattr(session_module, "execute", exit_once)
    row, running = bench._measure(FRONTEND, first, POINT)  # type: ignore[arg-type]
    assert row["frontend_crashes"] == 1 and row["triton_crashes"] == 0
    assert stack.starts == 1 and first.stopped and running is started[-1]


def test_a_triton_that_keeps_crashing_fails_the_point_after_the_retries(bench_session, monkeypatch) -> None:
    bench, stack, _, _ = bench_session

    def always_crash(running: FakeRunning, point: LoadPoint, *_: Any) -> dict[str, Any]:
        if point is POINT:
            stack.up = False
        return {}

    monkeypatch.setattr(session_module, "execute", always_crash)
    row, _ = bench._measure(FRONTEND, FakeRunning(-1), POINT)  # type: ignore[arg-type]
    assert row["failed"] == "tritonserver crashed 3 times during this point"
    assert stack.starts == 3  # restarted after the first two crashes only
