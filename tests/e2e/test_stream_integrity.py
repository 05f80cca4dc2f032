"""Stream integrity against the real Triton: right text in every mode, nothing generated after the client leaves.

Uses the synthetic engine: its output is valid UTF-8 whose multi-byte characters are split across tokens, so a
per-chunk decode (the ensemble's postprocessing) breaks them while a correct stream does not.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

MODES = {"ensemble": "ensemble", "bls": "tensorrt_llm_bls", "direct": "tensorrt_llm"}
PROMPTS = ["Bonjour, ça va? Ünïcödé", "日本語で話してください。", "Привет, как дела? 🙂🚀", "مرحبا بالعالم"]
REPLACEMENT = "\ufffd"


@pytest.fixture(scope="module")
def synthetic_triton() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=2)) as server:
        yield server


@pytest.fixture(scope="module")
def slow_triton() -> Iterator[TritonServer]:
    """Tokens every 20 ms: a generation of 2,000 tokens would run for 40 s if nothing stopped it."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=20)) as server:
        yield server


def _gateways(triton: TritonServer, log_dir: Path) -> Iterator[dict[str, GatewayProcess]]:
    gateways = {mode: start_gateway(triton, log_dir, "--triton-model", model) for mode, model in MODES.items()}
    yield gateways
    for gateway in gateways.values():
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def gateways(synthetic_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory):
    yield from _gateways(synthetic_triton, tmp_path_factory.mktemp("integrity"))


@pytest.fixture(scope="module")
def slow_gateways(slow_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory):
    yield from _gateways(slow_triton, tmp_path_factory.mktemp("cancel"))


def completion_body(gateway: GatewayProcess, prompt: str, stream: bool, max_tokens: int = 48) -> dict[str, object]:
    return {"model": gateway.model, "prompt": prompt, "max_tokens": max_tokens, "stream": stream, "temperature": 0}


def streamed_text(gateway: GatewayProcess, body: dict[str, object]) -> tuple[str, list[str]]:
    pieces: list[str] = []
    with httpx.stream("POST", f"{gateway.v1}/completions", json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"]
                if choice:
                    pieces.append(choice[0]["text"])
    return "".join(pieces), pieces


@pytest.mark.parametrize("mode", ["bls", "direct"])
def test_streamed_text_is_the_one_shot_decode(gateways: dict[str, GatewayProcess], mode: str) -> None:
    gateway = gateways[mode]
    for prompt in PROMPTS:
        full = httpx.post(f"{gateway.v1}/completions", json=completion_body(gateway, prompt, False), timeout=60)
        one_shot = full.json()["choices"][0]["text"]
        assert REPLACEMENT not in one_shot and any(ord(c) > 127 for c in one_shot), one_shot
        text, pieces = streamed_text(gateway, completion_body(gateway, prompt, True))
        assert text == one_shot
        assert not any(REPLACEMENT in piece for piece in pieces)


def test_ensemble_mode_shows_the_per_chunk_defect_at_most_once_per_character(
    gateways: dict[str, GatewayProcess],
) -> None:
    """The ensemble decodes each token alone: the gateway cannot repair it, only keep it to one U+FFFD."""
    gateway = gateways["ensemble"]
    broken = 0
    for prompt in PROMPTS:
        one_shot = httpx.post(f"{gateway.v1}/completions", json=completion_body(gateway, prompt, False), timeout=60)
        text, _ = streamed_text(gateway, completion_body(gateway, prompt, True))
        reference = one_shot.json()["choices"][0]["text"]
        broken += text.count(REPLACEMENT)
        assert REPLACEMENT * 2 not in text
        assert is_subsequence(text.replace(REPLACEMENT, ""), reference)
    assert broken > 0, "the synthetic engine should split multi-byte characters across tokens"


def is_subsequence(part: str, whole: str) -> bool:
    """Every character of `part` appears in `whole`, in order."""
    remaining = iter(whole)
    return all(char in remaining for char in part)


def running_requests(triton: TritonServer) -> float:
    """The dev engine's gauge of requests it is generating, from Triton's /metrics."""
    total = 0.0
    for line in httpx.get(triton.metrics_url, timeout=5).text.splitlines():
        if line.startswith("dev_engine_running_requests"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until_idle(triton: TritonServer, limit_s: float) -> float:
    """Seconds until the engine runs nothing; fails after limit_s."""
    start = time.monotonic()
    while running_requests(triton) > 0:
        elapsed = time.monotonic() - start
        assert elapsed < limit_s, f"still {running_requests(triton)} running after {elapsed:.2f} s"
        time.sleep(0.02)
    return time.monotonic() - start


async def read_then_disconnect(gateway: GatewayProcess, path: str, body: dict[str, object], chunks: int) -> None:
    async with httpx.AsyncClient(timeout=60) as client, client.stream("POST", f"{gateway.v1}{path}", json=body) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        seen = 0
        async for _ in r.aiter_raw():
            seen += 1
            if seen >= chunks:
                break
    # leaving the block closes the connection without reading the rest


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_disconnect_stops_generation_within_300ms(
    slow_gateways: dict[str, GatewayProcess], slow_triton: TritonServer, mode: str, path: str
) -> None:
    gateway = slow_gateways[mode]
    body: dict[str, object] = {"model": gateway.model, "max_tokens": 2000, "stream": True, "ignore_eos": True}
    body |= {"messages": [{"role": "user", "content": "go"}]} if path.startswith("/chat") else {"prompt": "go"}
    wait_until_idle(slow_triton, 5)
    asyncio.run(read_then_disconnect(gateway, path, body, chunks=3))
    assert wait_until_idle(slow_triton, 0.3) < 0.3


@pytest.mark.parametrize("mode", list(MODES))
def test_non_streamed_request_abandoned_by_client_stops_generation(
    slow_gateways: dict[str, GatewayProcess], slow_triton: TritonServer, mode: str
) -> None:
    gateway = slow_gateways[mode]
    body = {"model": gateway.model, "prompt": "go", "max_tokens": 2000, "ignore_eos": True}
    wait_until_idle(slow_triton, 5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.v1}/completions", json=body, timeout=0.5)
    assert wait_until_idle(slow_triton, 0.3) < 0.3


@pytest.mark.parametrize("mode", ["bls", "direct"])
def test_stop_string_match_stops_upstream(
    slow_gateways: dict[str, GatewayProcess], slow_triton: TritonServer, mode: str
) -> None:
    """Also for a non-streamed request: these modes stream from Triton when stop strings are given."""
    gateway = slow_gateways[mode]
    wait_until_idle(slow_triton, 5)
    first = httpx.post(
        f"{gateway.v1}/completions",
        json={"model": gateway.model, "prompt": "go", "max_tokens": 6, "temperature": 0},
        timeout=60,
    ).json()["choices"][0]["text"]
    stop = first[2:5]
    start = time.monotonic()
    result = httpx.post(
        f"{gateway.v1}/completions",
        json={"model": gateway.model, "prompt": "go", "max_tokens": 2000, "temperature": 0, "stop": [stop]},
        timeout=60,
    ).json()
    assert result["choices"][0]["finish_reason"] == "stop"
    assert time.monotonic() - start < 5  # 2,000 tokens at 20 ms would take 40 s
    assert wait_until_idle(slow_triton, 0.3) < 0.3


def test_hundred_streams_cut_at_random_points_leave_nothing_running(
    slow_gateways: dict[str, GatewayProcess], slow_triton: TritonServer
) -> None:
    rng = random.Random(1234)
    wait_until_idle(slow_triton, 5)

    async def main() -> None:
        jobs = []
        for index in range(100):
            gateway = slow_gateways[rng.choice(list(MODES))]
            body = {"model": gateway.model, "prompt": f"stream {index}", "max_tokens": 2000, "stream": True}
            body["ignore_eos"] = True
            jobs.append(read_then_disconnect(gateway, "/completions", body, chunks=rng.randint(1, 30)))
        await asyncio.gather(*jobs)

    asyncio.run(main())
    # The requirement is "zero left running" (the 0.3 s bound has its own tests); 100 stop requests on a busy
    # 2-core machine need a few seconds to all land.
    wait_until_idle(slow_triton, 5.0)


@pytest.mark.parametrize("mode", list(MODES))
def test_disconnect_with_four_choices_stops_them_all_within_300ms(
    slow_gateways: dict[str, GatewayProcess], slow_triton: TritonServer, mode: str
) -> None:
    gateway = slow_gateways[mode]
    body = {"model": gateway.model, "prompt": "go", "max_tokens": 2000, "stream": True, "ignore_eos": True, "n": 4}
    wait_until_idle(slow_triton, 5)
    asyncio.run(read_then_disconnect(gateway, "/completions", body, chunks=6))
    assert wait_until_idle(slow_triton, 0.3) < 0.3
