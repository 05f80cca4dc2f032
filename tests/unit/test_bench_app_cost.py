"""bench.app_cost runs the real app against its instant engine: every token and request gets through."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench import app_cost
from bench.fake_triton import fake_triton
from gateway.app import build_registry, create_app
from gateway.core.tokens import load_tokenizer
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from tests.unit.asgi_driver import start


async def test_app_cost_measures_tokens_and_requests_through_the_real_app(monkeypatch) -> None:
    sent: list[int] = []
    real_request = app_cost._request

    async def counting(app, body: bytes) -> int:
        count = await real_request(app, body)
        sent.append(count)
        return count

    monkeypatch.setattr(app_cost, "_request", counting)
    result = await app_cost.measure(tokens=20, requests=3, rounds=1)
    assert result["per_token_us"] > 0 and result["per_request_us"] > 0
    # warm-up, the long stream, three short ones; each a start, one body per SSE write and the end
    assert len(sent) == 5
    assert sent[0] == sent[1] >= 20 and all(count >= 3 for count in sent[2:])


@pytest.mark.parametrize("upstream", ["ensemble", "direct"])
async def test_the_stand_in_triton_streams_the_sample_text_through_the_real_triton_engine(upstream: str) -> None:
    model_dir = ensure_dev_model()
    tokenizer = load_tokenizer(model_dir)
    ids = tokenizer.encode(app_cost.SAMPLE_TEXT, add_special_tokens=False)
    with fake_triton(model_dir, [(token, tokenizer.decode([token])) for token in ids]):
        settings = app_cost.upstream_settings(model_dir, upstream, tools=0, max_tokens=64)
        app = create_app(build_registry(settings), settings)
        async with app.router.lifespan_context(app):
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
    result = await app_cost.measure(tokens=20, requests=2, rounds=1, upstream="ensemble")
    assert result["per_token_us"] > 0 and result["per_request_us"] > 0
