"""`--stream-interval N` through the real Triton: the first token goes out at once, then an event per N tokens,
and the text, log-probabilities and usage are what a gateway without the interval streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.devstack import TritonServer
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

INTERVAL = 4
MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 14, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def interval_gateway(hf_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of the ensemble, sending an event per INTERVAL tokens."""
    process = start_gateway(hf_triton, tmp_path_factory.mktemp("interval"), "--stream-interval", str(INTERVAL))
    yield process
    stop_gateway(process)


def _streamed(gateway: GatewayProcess) -> tuple[list[list[str]], int]:
    """Per content chunk its tokens (from its logprobs), and the usage's completion tokens."""
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused")
    stream = client.chat.completions.create(
        model=gateway.model,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        logprobs=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    chunks: list[list[str]] = []
    completion_tokens = -1
    for chunk in stream:
        if chunk.usage is not None:
            completion_tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            assert chunk.choices[0].delta.content == "".join(lp.token for lp in chunk.choices[0].logprobs.content)
            chunks.append([lp.token for lp in chunk.choices[0].logprobs.content])
    return chunks, completion_tokens


def test_the_first_token_comes_alone_then_one_event_per_interval(
    interval_gateway: GatewayProcess, gateway: GatewayProcess
) -> None:
    chunks, completion_tokens = _streamed(interval_gateway)
    sizes = [len(tokens) for tokens in chunks]
    assert completion_tokens == GREEDY["max_tokens"] == sum(sizes)
    # The first token is not held back; after it, never fewer than INTERVAL per event until the end (more only
    # if the client lags behind the engine, as without the interval).
    assert sizes[0] < INTERVAL, sizes
    assert all(size >= INTERVAL for size in sizes[1:-1]), sizes
    assert len(sizes) <= 1 + -(-(completion_tokens - 1) // INTERVAL), sizes
    plain_chunks, plain_tokens = _streamed(gateway)
    assert plain_tokens == completion_tokens
    assert len(plain_chunks) >= 2 * len(chunks)  # without it: an event per token (14 against at most 5)
    assert [token for tokens in chunks for token in tokens] == [token for tokens in plain_chunks for token in tokens]


def test_responses_stream_their_deltas_per_interval_too(interval_gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=interval_gateway.v1, api_key="unused")
    deltas: list[str] = []
    final = None
    with client.responses.stream(
        model=interval_gateway.model,
        input="Tell me about the sea",
        max_output_tokens=GREEDY["max_tokens"],
        temperature=0,
        store=False,
        extra_body={"ignore_eos": True},
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.incomplete":  # cut at max_output_tokens, as asked
                final = event.response
    assert final is not None and final.usage is not None and final.usage.output_tokens == GREEDY["max_tokens"]
    # 14 tokens: 1, then 4, 4, 4, then the last 1: five deltas at most (fewer if a piece's text is held back
    # until the next one completes a character), against 14 without the interval.
    assert 2 <= len(deltas) <= 1 + -(-(GREEDY["max_tokens"] - 1) // INTERVAL), deltas
    assert "".join(deltas) == final.output_text
