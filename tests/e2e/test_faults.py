"""Faults against the real Triton: a crash mid-stream and a restart, slow upstreams against each timeout,
SIGTERM during 50 streams, and 4x overload. Each test checks what the client saw and that nothing keeps
running upstream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from gateway.devstack.triton_server import TritonPorts
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_stream_integrity import wait_until_idle

pytestmark = pytest.mark.e2e


def stream_body(gateway: GatewayProcess, max_tokens: int) -> dict[str, object]:
    return {"model": gateway.model, "prompt": "go", "max_tokens": max_tokens, "stream": True, "ignore_eos": True}


async def read_events(gateway: GatewayProcess, body: dict[str, object], events: list[str], timeout: float = 60) -> int:
    """Stream into `events` (each SSE event's text); returns the HTTP status."""
    url = f"{gateway.v1}/completions"
    async with httpx.AsyncClient(timeout=timeout) as client, client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            events.append((await response.aread()).decode())
            return response.status_code
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                events.append(event)
        return 200


def error_of(events: list[str]) -> dict[str, object] | None:
    """The error of an `event: error` SSE event, if any."""
    for event in events:
        if event.startswith("event: error"):
            return json.loads(event.split("data: ", 1)[1])["error"]
    return None


def wait_for_status(url: str, status: int, limit_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {limit_s} s")


def test_triton_killed_mid_stream_then_restarted(tmp_path: Path) -> None:
    ports = TritonPorts(grpc=free_port(), http=free_port(), metrics=free_port())
    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=20)
    with dev_triton(options, ports=ports) as triton:
        gateway = start_gateway(triton, tmp_path)
        try:

            async def streams_while_killing() -> list[list[str]]:
                logs: list[list[str]] = [[] for _ in range(10)]
                tasks = [asyncio.create_task(read_events(gateway, stream_body(gateway, 2000), log)) for log in logs]
                await asyncio.sleep(1.0)
                os.killpg(triton.process.pid, signal.SIGKILL)  # Triton and its Python stubs, like a crash
                statuses = await asyncio.wait_for(asyncio.gather(*tasks), 15)
                assert statuses == [200] * 10
                return logs

            logs = asyncio.run(streams_while_killing())
            for log in logs:
                assert log[-1] == "data: [DONE]"
                error = error_of(log)
                assert error is not None and error["type"] == "service_unavailable", log[-3:]
                assert len(log) > 5  # tokens had been streamed before the crash
            wait_for_status(f"{gateway.url}/health/ready", 503, 10)
            refused = httpx.post(f"{gateway.v1}/completions", json={"model": gateway.model, "prompt": "x"})
            assert refused.status_code == 503 and refused.json()["error"]["type"] == "service_unavailable"
            assert gateway.process.poll() is None
        finally:
            triton.stop(timeout=5)
        # The same Triton comes back on the same ports: the gateway recovers by itself.
        with dev_triton(options, ports=ports) as restarted:
            waited = wait_for_status(f"{gateway.url}/health/ready", 200, 20)
            result = httpx.post(
                f"{gateway.v1}/completions", json={"model": gateway.model, "prompt": "x", "max_tokens": 5}, timeout=30
            )
            assert result.status_code == 200 and result.json()["usage"]["completion_tokens"] == 5
            assert wait_until_idle(restarted, 1) < 1
            print(f"gateway ready again {waited:.1f} s after Triton's restart")
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def slow_triton() -> Iterator[TritonServer]:
    """First token after 2 s, then one every 400 ms."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=2000, synthetic_itl_ms=400)) as server:
        yield server


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (["--first-token-timeout-s", "0.5"], "504 before streaming"),
        (["--first-token-timeout-s", "5", "--idle-timeout-s", "0.2"], "error event after the first token"),
        (["--first-token-timeout-s", "5", "--idle-timeout-s", "5", "--request-timeout-s", "2.7"], "error event"),
    ],
    ids=["first-token", "idle", "total"],
)
def test_timeouts_tell_the_client_and_stop_upstream(
    slow_triton: TritonServer, tmp_path: Path, flags: list[str], expect: str
) -> None:
    gateway = start_gateway(slow_triton, tmp_path, *flags)
    try:
        wait_until_idle(slow_triton, 5)
        events: list[str] = []
        status = asyncio.run(read_events(gateway, stream_body(gateway, 100), events))
        if expect.startswith("504"):
            assert status == 504 and json.loads(events[0])["error"]["type"] == "timeout"
        else:
            assert status == 200 and events[-1] == "data: [DONE]"
            error = error_of(events)
            assert error is not None and error["type"] == "timeout", events
            assert any('"text":' in e for e in events)  # the first token did reach the client
        # This engine takes a step every 400 ms and retires a stopped request at its next step; the 0.3 s bound of
        # the disconnect tests is measured on an engine with 20 ms steps.
        assert wait_until_idle(slow_triton, 1.0) < 1.0
    finally:
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def steady_triton() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=20)) as server:
        yield server


def test_sigterm_during_50_streams_drains_then_ends_the_rest(steady_triton: TritonServer, tmp_path: Path) -> None:
    gateway = start_gateway(steady_triton, tmp_path, "--drain-timeout-s", "3")
    wait_until_idle(steady_triton, 5)

    async def scenario() -> tuple[list[list[str]], list[list[str]]]:
        short = [[] for _ in range(25)]  # 20 tokens at 20 ms (0.4 s): finish well inside the 3 s drain
        long = [[] for _ in range(25)]  # 2,000 tokens: still running when the drain ends
        tasks = [asyncio.create_task(read_events(gateway, stream_body(gateway, 20), log)) for log in short]
        tasks += [asyncio.create_task(read_events(gateway, stream_body(gateway, 2000), log)) for log in long]
        deadline = time.monotonic() + 20
        while not all(short + long) and time.monotonic() < deadline:  # every stream has its first event
            await asyncio.sleep(0.02)
        gateway.process.send_signal(signal.SIGTERM)
        statuses = await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert statuses == [200] * 50
        return short, long

    try:
        short, long = asyncio.run(scenario())
        for log in short:
            assert log[-1] == "data: [DONE]" and error_of(log) is None
            assert '"finish_reason":"length"' in log[-2]
        for log in long:
            assert log[-1] == "data: [DONE]"
            error = error_of(log)
            assert error is not None and error["code"] == "server_shutting_down"
        assert gateway.process.wait(15) == 0
        assert wait_until_idle(steady_triton, 0.5) < 0.5
    finally:
        if gateway.process.poll() is None:
            stop_gateway(gateway)


def test_four_times_the_limit_gets_only_200_and_429(steady_triton: TritonServer, tmp_path: Path) -> None:
    limit = 8
    gateway = start_gateway(
        steady_triton,
        tmp_path,
        "--max-concurrent-requests", str(limit), "--max-queued-requests", "4", "--queue-timeout-s", "0.3",
    )  # fmt: skip
    try:

        async def load() -> list[int]:
            logs: list[list[str]] = [[] for _ in range(4 * limit)]
            return await asyncio.wait_for(
                asyncio.gather(*(read_events(gateway, stream_body(gateway, 50), log) for log in logs)), 60
            )

        statuses = asyncio.run(load())
        assert set(statuses) <= {200, 429}, gateway.log()[-3000:] and statuses.count(200) >= limit and 429 in statuses
        assert wait_until_idle(steady_triton, 1) < 1
    finally:
        stop_gateway(gateway)
