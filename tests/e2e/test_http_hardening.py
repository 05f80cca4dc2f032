"""Slow and idle clients against the real gateway process in front of the real Triton (issue 26, items 2, 3, 6):
raw sockets (asyncio streams) play the attackers; during each attack `/health/live` answers within 200 ms on a new
connection, normal requests still work, and what is refused gets a 4xx in OpenAI's shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_fleet import metric

pytestmark = pytest.mark.e2e

LIVE_WITHIN_S = 0.2


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonServer]:
    """First token after 1.5 s, then one every 50 ms: time to leave before it, or after it."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=1500, synthetic_itl_ms=50)) as server:
        yield server


@contextlib.contextmanager
def gateway_with(triton: TritonServer, folder: Path, *flags: str) -> Iterator[GatewayProcess]:
    gateway = start_gateway(triton, folder, *flags)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def gateway(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway with default settings and JSON logs."""
    with gateway_with(triton, tmp_path_factory.mktemp("hardening"), "--log-format", "json") as process:
        yield process


def chat_bytes(gateway: GatewayProcess, sent: int | None = None, **extra: object) -> bytes:
    """A raw chat request; with `sent`, only that many bytes of its body."""
    body = json.dumps({"model": gateway.model, "messages": [{"role": "user", "content": "Hi"}], **extra}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body[:sent]


async def connect(gateway: GatewayProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(gateway.url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def until_closed(reader: asyncio.StreamReader, limit_s: float) -> tuple[int | None, dict[str, object] | None]:
    """What the gateway sent before closing the connection: (status, JSON body), or (None, None) for nothing."""
    raw = await asyncio.wait_for(reader.read(), limit_s)
    if not raw:
        return None, None
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def live_latency(gateway: GatewayProcess) -> float:
    """Seconds for GET /health/live on a new connection."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{gateway.url}/health/live")
    assert response.status_code == 200
    return time.monotonic() - started


async def assert_responsive(gateway: GatewayProcess, normal_request: bool = True) -> None:
    """/health/live within 200 ms (best of three, so that one scheduling hiccup of this shared machine does not
    decide), and, if asked, a normal chat request answered."""
    latencies = [await live_latency(gateway) for _ in range(3)]
    print(f"/health/live during the attack: {', '.join(f'{s * 1000:.0f}' for s in latencies)} ms")
    assert min(latencies) < LIVE_WITHIN_S, latencies
    if normal_request:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": gateway.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            response = await http.post(f"{gateway.v1}/chat/completions", json=body)
        assert response.status_code == 200, response.text


def assert_openai_error(body: dict[str, object] | None, code: str) -> None:
    assert body is not None and set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] in ("invalid_request_error", "rate_limit_error")


def test_slow_uploads_hold_no_slot_and_get_a_408(triton: TritonServer, tmp_path: Path) -> None:
    flags = ("--max-concurrent-requests", "4", "--max-queued-requests", "4", "--body-timeout-s", "3")
    with gateway_with(triton, tmp_path, *flags) as gateway:

        async def attack() -> list[tuple[int | None, dict[str, object] | None]]:
            slow = [await connect(gateway) for _ in range(8)]
            started = time.monotonic()
            for _, writer in slow:
                writer.write(chat_bytes(gateway, sent=9))  # 9 bytes of the body, then nothing
            await asyncio.sleep(0.3)
            await assert_responsive(gateway)  # a 429 if the 8 held the 4 slots and the 4 queue places
            assert metric(gateway, "gateway_saturation_ratio") == 0
            answers = await asyncio.gather(*(until_closed(reader, 10) for reader, _ in slow))
            assert 2.9 < time.monotonic() - started < 6
            return answers

        for status, body in asyncio.run(attack()):
            assert status == 408
            assert_openai_error(body, "request_timeout")
        assert metric(gateway, "gateway_requests_total", status="408") == 8


def test_slowloris_headers_are_cut_off_after_the_header_timeout(triton: TritonServer, tmp_path: Path) -> None:
    with gateway_with(triton, tmp_path, "--header-timeout-s", "2") as gateway:

        async def attack() -> list[tuple[int | None, dict[str, object] | None]]:
            loris = [await connect(gateway) for _ in range(100)]
            started = time.monotonic()
            for _, writer in loris:
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n")

            async def trickle() -> None:
                # A header line now and then, never the blank line; until shortly before the 2 s are up (a write
                # that meets the closed connection would make this reader drop the 408 it already received).
                while time.monotonic() - started < 1.5:
                    await asyncio.sleep(0.3)
                    for _, writer in loris:
                        writer.write(b"x-slow: 1\r\n")

            trickling = asyncio.create_task(trickle())
            await asyncio.sleep(0.5)
            await assert_responsive(gateway)
            answers = await asyncio.gather(*(until_closed(reader, 10) for reader, _ in loris))
            trickling.cancel()
            assert 1.9 < time.monotonic() - started < 5
            return answers

        for status, body in asyncio.run(attack()):
            assert status == 408
            assert_openai_error(body, "request_timeout")
        assert metric(gateway, "gateway_connections_dropped_total", reason="header_timeout") == 100


@contextlib.contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """`ulimit -n soft` for the processes started inside (the limit is inherited at fork)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_1100_idle_half_requests_under_ulimit_1024_leave_room_for_everyone(
    triton: TritonServer, tmp_path: Path
) -> None:
    with open_files_limit(1024):
        gateway = start_gateway(triton, tmp_path, "--header-timeout-s", "30")  # the default connection limit
    try:

        async def attack() -> None:
            idle: list[asyncio.StreamWriter] = []
            for _ in range(1100):
                _, writer = await connect(gateway)
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\n")  # a half request, then nothing
                idle.append(writer)
            await asyncio.sleep(0.5)
            await assert_responsive(gateway)
            open_now = metric(gateway, "gateway_connections_open")
            assert open_now <= 1024 - 128, open_now  # the default: what ulimit -n leaves after a reserve
            for writer in idle:
                writer.close()

        asyncio.run(attack())
        evicted = metric(gateway, "gateway_connections_dropped_total", reason="idle_evicted")
        assert evicted >= 1100 - (1024 - 128)
        log = gateway.log()
        assert "connection limit (896) reached" in log
        assert log.count("connection limit (896) reached") < 5  # a line per 10 s, not per connection
        assert gateway.process.poll() is None
    finally:
        stop_gateway(gateway)


def test_at_the_limit_with_every_connection_busy_newcomers_get_a_429(triton: TritonServer, tmp_path: Path) -> None:
    with gateway_with(triton, tmp_path, "--max-connections", "6", "--body-timeout-s", "3") as gateway:

        async def attack() -> list[tuple[int | None, dict[str, object] | None]]:
            busy = [await connect(gateway) for _ in range(6)]
            for _, writer in busy:
                writer.write(chat_bytes(gateway, sent=9))  # requests in progress (their bodies still coming)
            await asyncio.sleep(0.3)
            newcomers = [await connect(gateway) for _ in range(3)]  # (the writers kept: unused, they would close)
            refused = [await until_closed(reader, 5) for reader, _ in newcomers]
            await asyncio.gather(*(until_closed(reader, 10) for reader, _ in busy))  # 408s free the connections
            await assert_responsive(gateway)
            return refused

        for status, body in asyncio.run(attack()):
            assert status == 429
            assert_openai_error(body, "rate_limit_exceeded")
        assert metric(gateway, "gateway_connections_dropped_total", reason="refused") == 3


@contextlib.asynccontextmanager
async def sent_request(gateway: GatewayProcess, stream: bool) -> AsyncIterator[asyncio.StreamReader]:
    reader, writer = await connect(gateway)
    writer.write(chat_bytes(gateway, max_tokens=200, stream=stream, ignore_eos=True))
    try:
        yield reader
    finally:
        writer.close()  # the hang-up


def test_every_hang_up_is_a_499_streamed_or_not_before_or_after_the_first_token(gateway: GatewayProcess) -> None:
    chat = "/v1/chat/completions"
    before = {status: metric(gateway, "gateway_requests_total", endpoint=chat, status=status) for status in
              ("200", "499", "500")}  # fmt: skip

    async def hang_ups() -> None:
        for stream in (True, False):
            async with sent_request(gateway, stream):
                await asyncio.sleep(0.5)  # queued upstream: the first token comes after 1.5 s
            async with sent_request(gateway, stream) as reader:
                if stream:
                    await reader.readuntil(b"data: ")  # the first token reached the client
                else:
                    await asyncio.sleep(2.0)  # tokens are being generated
        await asyncio.sleep(0.5)

    asyncio.run(hang_ups())
    for stream in ("true", "false"):
        assert metric(gateway, "gateway_requests_total", endpoint=chat, status="499", stream=stream) == 2
    assert metric(gateway, "gateway_requests_total", endpoint=chat, status="500") == before["500"] == 0
    assert metric(gateway, "gateway_requests_total", endpoint=chat, status="200") == before["200"] == 0
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    hung_up = [line for line in lines if line.get("message", "").startswith("POST /v1/chat/completions 499")]
    assert [line["client_disconnected"] for line in hung_up] == [True] * 4


API_KEY = "sk-clé-ключ"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"repetition_penalty": 1e-320}, "repetition_penalty"),  # arrives as 0 in an FP32 tensor
        ({"presence_penalty": -1e-40}, "presence_penalty"),  # (a temperature that small means greedy: top_k 1)
        ({"top_p": 5e-39}, "top_p"),  # a subnormal, which GPU kernels flush to 0
    ],
)
def test_floats_fp32_cannot_hold_are_a_400_naming_the_field(
    gateway: GatewayProcess, body: dict[str, float], param: str
) -> None:
    for stream in (False, True):
        request = {"model": gateway.model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        response = httpx.post(f"{gateway.v1}/chat/completions", json=request | body, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and "32-bit float" in error["message"]


def test_json_that_is_not_utf8_is_refused_and_a_utf8_api_key_matches(triton: TritonServer, tmp_path: Path) -> None:
    with gateway_with(triton, tmp_path, "--api-keys", API_KEY) as gateway:
        text = json.dumps({"model": gateway.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        key = {"authorization": b"Bearer " + API_KEY.encode(), "content-type": b"application/json"}
        url = f"{gateway.v1}/chat/completions"
        assert httpx.post(url, content=text.encode(), headers=key, timeout=30).status_code == 200
        for raw in (text.encode("utf-16"), text.encode("utf-32"), b"\xef\xbb\xbf" + text.encode()):
            response = httpx.post(url, content=raw, headers=key, timeout=30)
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
        wrong = {"authorization": b"Bearer " + API_KEY.encode()[:-1]}
        assert httpx.post(url, content=text.encode(), headers=wrong, timeout=30).status_code == 401
        version = httpx.get(f"{gateway.url}/version", headers=key).json()
        assert "127.0.0.1" not in json.dumps(version) and "upstream" not in json.dumps(version)
