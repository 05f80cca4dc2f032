"""Errors in the shape of the route's protocol: middleware, handlers and streams of a route that declares its own
shape answer in it, every other route keeps OpenAI's (as Messages will need Anthropic's on its routes only)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.api.errors import ErrorShape, ErrorShapes
from gateway.app import create_app
from gateway.config import Settings
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import GatewayError, UpstreamUnavailableError
from tests.unit.fake_engine import FakeEngine

KEY = {"authorization": "Bearer secret"}


def other_body(error: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error.type, "message": error.message}})


# A protocol with its own body and an overload status of its own (Anthropic's 529).
OTHER = ErrorShape(status=lambda error: 529 if error.status == 503 else error.status, body=other_body)


@pytest.fixture
async def http(tokenizer: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FakeEngine]]:
    engine = FakeEngine()
    model = ServedModel(DEV_MODEL_NAME, engine, ChatTemplate(tokenizer), TokenCounter(tokenizer), 16, 1000)
    app = create_app(ModelRegistry([model]), Settings(api_keys="secret", max_body_bytes=2048))
    app.state.error_shapes = ErrorShapes((("/v1/chat/", OTHER),))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client, engine


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], **extra}


def in_other_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


async def test_the_auth_middleware_answers_in_the_routes_shape(http: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, _ = http
    error = in_other_shape(await client.post("/v1/chat/completions", json=chat()), 401)
    assert "API key" in error["message"]
    openai = await client.post("/v1/completions", json={"model": DEV_MODEL_NAME, "prompt": "x"})
    assert openai.status_code == 401 and set(openai.json()["error"]) == {"message", "type", "param", "code"}


async def test_the_body_middleware_answers_in_the_routes_shape(http: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, _ = http
    big = chat(messages=[{"role": "user", "content": "x" * 4096}])
    assert "larger" in in_other_shape(await client.post("/v1/chat/completions", json=big, headers=KEY), 413)["message"]


async def test_validation_and_gateway_errors_answer_in_the_routes_shape(
    http: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, _ = http
    invalid = in_other_shape(await client.post("/v1/chat/completions", json=chat(n=0), headers=KEY), 400)
    assert "'n'" in invalid["message"]
    unknown = in_other_shape(await client.post("/v1/chat/completions", json=chat(model="x"), headers=KEY), 404)
    assert unknown["type"] == "not_found_error"


async def test_a_stream_refused_before_output_uses_the_routes_status_and_body(
    http: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = http
    engine.fail_with = UpstreamUnavailableError("down")
    response = await client.post("/v1/chat/completions", json=chat(stream=True), headers=KEY)
    assert in_other_shape(response, 529)["message"] == "down"


async def test_a_stream_failing_after_output_reports_the_error_in_the_routes_shape(
    http: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = http
    engine.fail_with, engine.fail_after = UpstreamUnavailableError("gone"), 1
    response = await client.post("/v1/chat/completions", json=chat(stream=True), headers=KEY)
    assert response.status_code == 200
    error_event = next(block for block in response.text.split("\n\n") if block.startswith("event: error"))
    assert json.loads(error_event.split("data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "service_unavailable", "message": "gone"},
    }
    assert response.text.endswith("data: [DONE]\n\n")  # chat's own stream style still ends with [DONE]
