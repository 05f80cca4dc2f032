"""SSE keep-alive through the real Triton: a first token later than the keep-alive interval gets comment lines
while it is awaited, and the OpenAI SDK and LiteLLM still read the stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

FIRST_TOKEN_MS = 1500
KEEPALIVE_S = 0.4


@pytest.fixture(scope="module")
def late_triton() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=FIRST_TOKEN_MS, synthetic_itl_ms=5)) as s:
        yield s


@pytest.fixture(scope="module")
def late_gateway(late_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway(late_triton, tmp_path_factory.mktemp("keepalive"), "--sse-keepalive-s", str(KEEPALIVE_S))
    yield gateway
    stop_gateway(gateway)


def body(gateway: GatewayProcess) -> dict[str, object]:
    return {"model": gateway.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "stream": True}  # fmt: skip


def test_comments_arrive_while_the_first_token_is_awaited(late_gateway: GatewayProcess) -> None:
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    with httpx.stream("POST", f"{late_gateway.v1}/chat/completions", json=body(late_gateway), timeout=30) as response:
        assert response.status_code == 200
        headers_after = time.monotonic() - start
        for line in response.iter_lines():
            lines.append((time.monotonic() - start, line))
    comments = [t for t, line in lines if line == ": keep-alive"]
    first_data = next(t for t, line in lines if line.startswith("data: {"))
    assert headers_after < FIRST_TOKEN_MS / 1000  # committed to 200 before the first token
    assert len(comments) >= 2 and all(t < first_data for t in comments[:2])
    assert comments[0] < KEEPALIVE_S + 0.5
    assert [line for _, line in lines if line][-1] == "data: [DONE]"


def test_the_sdk_and_litellm_read_a_stream_with_comments(late_gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=late_gateway.v1, api_key="unused", max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(model=late_gateway.model, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=4, stream=True))  # fmt: skip
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    litellm = pytest.importorskip("litellm")
    stream = litellm.completion(model=f"openai/{late_gateway.model}", api_base=late_gateway.v1, api_key="unused",
                                messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True)  # fmt: skip
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text
