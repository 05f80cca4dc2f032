"""The load generator reads each protocol's answers: content events feed the clock, usage and the end are seen."""

from __future__ import annotations

import json

import pytest

from bench.clients import EXCHANGES
from bench.runner import openai_path
from bench.window import RequestClock, WindowStats

STREAMS = {
    "chat": [
        ("message", {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
        ("message", {"choices": [{"index": 0, "delta": {"content": " there"}}]}),
        ("message", {"choices": [], "usage": {"completion_tokens": 2}}),
        ("message", "[DONE]"),
    ],
    "responses": [
        ("response.created", {"type": "response.created", "response": {}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": " there"}),
        ("response.output_text.done", {"type": "response.output_text.done", "text": "Hi there"}),
        ("response.completed", {"type": "response.completed", "response": {"usage": {"output_tokens": 2}}}),
    ],
    "messages": [
        ("message_start", {"type": "message_start", "message": {}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " there"}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ],
}
BODIES = {
    "chat": {"choices": [{"message": {"content": "Hi there"}}], "usage": {"completion_tokens": 2}},
    "responses": {
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi there"}]}],
        "usage": {"output_tokens": 2},
    },
    "messages": {"content": [{"type": "text", "text": "Hi there"}], "usage": {"output_tokens": 2}},
}


@pytest.mark.parametrize("protocol", list(EXCHANGES))
def test_a_streamed_answer_counts_its_content_and_usage(protocol: str) -> None:
    clock = RequestClock(WindowStats(0.0, 1e12, trust_usage=True), 0.0)
    exchange = EXCHANGES[protocol](clock)
    exchange.on_headers(200, 0.0)
    for index, (event, data) in enumerate(STREAMS[protocol]):
        exchange.on_event(event, data.encode() if isinstance(data, str) else json.dumps(data).encode(), index + 1)
    assert exchange.error is None and exchange.done
    assert clock.chunks == 2 and clock.usage_tokens == 2


@pytest.mark.parametrize("protocol", list(EXCHANGES))
def test_a_whole_answer_gives_its_text_and_an_error_event_fails(protocol: str) -> None:
    clock = RequestClock(WindowStats(0.0, 1e12, trust_usage=True), 0.0)
    exchange = EXCHANGES[protocol](clock)
    exchange.on_headers(200, 0.0)
    exchange.on_body(json.dumps(BODIES[protocol]).encode(), 1.0)
    assert exchange.text == "Hi there" and clock.usage_tokens == 2 and exchange.done
    failing = EXCHANGES[protocol](RequestClock(WindowStats(0.0, 1e12, trust_usage=True), 0.0))
    failing.on_headers(200, 0.0)
    failing.on_event("error", b'{"error": {}}', 1.0)
    assert failing.error is not None


def test_paths_under_a_base_url() -> None:
    assert openai_path("http://h:1", "responses") == "/v1/responses"
    assert openai_path("http://h:1/v1", "messages") == "/messages"
    assert openai_path("http://h:1") == "/v1/chat/completions"
