"""bench.app_cost runs the real app against its instant engine: every token and request gets through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bench import app_cost
from bench.fake_triton import fake_triton
from gateway.app import build_registry, create_app
from gateway.core.tokens import load_tokenizer
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from tests.unit.asgi_driver import start


@pytest.mark.parametrize("protocol", ["chat", "messages", "responses"])
async def test_app_cost_measures_tokens_and_requests_through_the_real_app(monkeypatch, protocol: str) -> None:
    sent: list[int] = []
    real_request = app_cost._request

    async def counting(app, body: bytes, path: str) -> int:
        assert path == app_cost.PROTOCOLS[protocol].path
        count = await real_request(app, body, path)
        sent.append(count)
        return count

    monkeypatch.setattr(app_cost, "_request", counting)
    result = await app_cost.measure(tokens=20, requests=3, rounds=1, protocol=protocol)
    assert result["per_token_us"] > 0 and result["per_request_us"] > 0
    # warm-up, the long stream, three short ones; each a start, one body per SSE write and the end
    assert len(sent) == 5
    assert sent[0] == sent[1] >= 20 and all(count >= 3 for count in sent[2:])


async def test_comparison_interleaves_the_protocols_and_divides_by_the_first(monkeypatch) -> None:
    paths: list[str] = []
    real_request = app_cost._request

    async def recording(app, body: bytes, path: str) -> int:
        paths.append(path)
        return await real_request(app, body, path)

    monkeypatch.setattr(app_cost, "_request", recording)
    results = await app_cost.compare(["chat", "responses", "messages"], tokens=10, requests=1, rounds=2, tools=1)
    chat, responses, messages = (app_cost.PROTOCOLS[name].path for name in ("chat", "responses", "messages"))
    # warm-ups, then per round: chat's long stream and short request, then responses', then messages'
    assert paths == [chat, responses, messages] + [chat, chat, responses, responses, messages, messages] * 2
    assert results["chat"]["per_token_ratio"] == [1.0, 1.0]
    for name in ("responses", "messages"):
        assert len(results[name]["per_token_ratio"]) == 2 and results[name]["per_token_us"] > 0


async def test_an_api_the_gateway_does_not_serve_is_left_out_and_a_refused_body_fails(monkeypatch) -> None:
    nowhere = app_cost.Api("/v1/nowhere", app_cost.PROTOCOLS["chat"].fields)
    monkeypatch.setitem(app_cost.PROTOCOLS, "nowhere", nowhere)
    results = await app_cost.compare(["chat", "nowhere"], tokens=5, requests=1, rounds=1)
    assert "404" in results["nowhere"]["not_served"] and results["chat"]["per_token_us"] > 0
    # a body the API refuses is not measured as a cheap request
    bad = app_cost.Api("/v1/chat/completions", lambda messages, max_tokens, tools: {"max_tokens": max_tokens})
    monkeypatch.setitem(app_cost.PROTOCOLS, "chat", bad)
    with pytest.raises(app_cost.NotServed, match="answered 400"):
        await app_cost.measure(tokens=5, requests=1, rounds=1)


@asynccontextmanager
async def app_over_stand_in(upstream: str) -> AsyncIterator[tuple[Any, Any, list[int]]]:
    """The started app over the stand-in Triton in `upstream` mode, the dev tokenizer, and the ids it streams."""
    model_dir = ensure_dev_model()
    tokenizer = load_tokenizer(model_dir)
    ids = tokenizer.encode(app_cost.SAMPLE_TEXT, add_special_tokens=False)
    with fake_triton(model_dir, [(token, tokenizer.decode([token])) for token in ids]):
        settings = app_cost.upstream_settings(model_dir, upstream, tools=0, max_tokens=64)
        app = create_app(build_registry(settings), settings)
        async with app.router.lifespan_context(app):
            yield app, tokenizer, ids


@pytest.mark.parametrize("upstream", ["ensemble", "direct"])
async def test_the_stand_in_triton_streams_the_sample_text_through_the_real_triton_engine(upstream: str) -> None:
    async with app_over_stand_in(upstream) as (app, tokenizer, ids):
        body = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}
        client, task = start(app, "/v1/chat/completions", body | {"stream": True})
        await asyncio.wait_for(task, 10)
    events = [line[6:] for line in client.body.decode().split("\n\n") if line.startswith("data: {")]
    text = "".join(json.loads(event)["choices"][0]["delta"].get("content", "") for event in events)
    assert client.status == 200 and client.body.endswith(b"data: [DONE]\n\n")
    assert text == tokenizer.decode(ids[:12])
    assert json.loads(events[-1])["choices"][0]["finish_reason"] == "length"
    assert len(events) >= 12  # one write per response: the engine's per-response path ran per token


async def test_app_cost_measures_through_the_triton_engine() -> None:
    result = await app_cost.measure(tokens=20, requests=2, rounds=1, upstream="ensemble", protocol="responses")
    assert result["per_token_us"] > 0 and result["per_request_us"] > 0


@pytest.mark.parametrize("upstream", ["ensemble", "direct"])
async def test_the_stand_in_triton_answers_a_non_streamed_call_with_one_response(upstream: str) -> None:
    async with app_over_stand_in(upstream) as (app, tokenizer, ids):
        channel = app.state.registry.get(DEV_MODEL_NAME).engine.upstreams[0].engine._channel
        real_responses = channel._responses
        responses: list[int] = []

        def counting_responses(request):
            answer = real_responses(request)
            responses.append(len(answer))
            return answer

        channel._responses = counting_responses  # whether the request has a call of its own or a shared stream
        body = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}
        client, task = start(app, "/v1/chat/completions", body)
        await asyncio.wait_for(task, 10)
    answer = json.loads(client.body)
    assert client.status == 200 and responses == [1]
    assert answer["choices"][0]["message"]["content"] == tokenizer.decode(ids[:12])
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 12


async def test_non_streamed_requests_in_flight_together_are_each_sent_once(monkeypatch) -> None:
    bodies: list[dict] = []
    in_flight = most = 0
    real_request = app_cost._request

    async def recording(app, body: bytes, path: str) -> int:
        nonlocal in_flight, most
        bodies.append(json.loads(body))
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await real_request(app, body, path)
        finally:
            in_flight -= 1

    monkeypatch.setattr(app_cost, "_request", recording)
    shape = app_cost.RequestShape(tokens=7, streamed=False, in_flight=3)
    result = await app_cost.measure(tokens=5, requests=7, rounds=1, upstream="ensemble", shape=shape)
    assert result["per_request_us"] > 0
    requests = bodies[2:]  # after the warm-up and the long stream
    assert len(requests) == 7 and all(not b["stream"] and b["max_tokens"] == 7 for b in requests)
    assert most == 3  # the stand-in Triton answers after a turn of the loop: the requests overlap
    assert shape.describe() == "7-token non-streamed request (3 in flight)"
