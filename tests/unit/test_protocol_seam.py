"""A new protocol is a decoder, an encoder and a router: a toy one with named events (as Responses and Messages
have), its own ids, ping and error shape, served through the same pipeline, core and framer as chat."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.api.errors import ErrorShape, ErrorShapes
from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import GenerationRoute, serve_generation
from gateway.api.sse import StreamStyle
from gateway.app import create_app
from gateway.config import Settings
from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, TextEvent
from gateway.core.generation import CollectedChoice, Generation, NamedEvent
from gateway.core.planning import plan_conversation
from gateway.core.request import Conversation, ConversationRequest, GenerationOptions, Turn
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import GatewayError, UpstreamUnavailableError
from tests.unit.fake_engine import FakeEngine


class ToyRequest(BaseModel):
    model: str
    input: str
    max_output_tokens: int | None = None
    stream: bool = False
    user: str | None = None


class ToyEncoder:
    """Named events with a sequence number, which its failure event continues."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self.sequence = 0

    def _event(self, name: str, data: dict[str, Any]) -> NamedEvent:
        self.sequence += 1
        return name.encode(), orjson.dumps({"type": name, "sequence_number": self.sequence, **data})

    def opening(self, choices: Sequence[Choice]) -> list[NamedEvent]:
        return [self._event("toy.created", {"id": self.response_id})]

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[NamedEvent]:
        return [
            self._event("toy.delta", {"delta": event.text})
            if isinstance(event, TextEvent)
            else self._event("toy.finished", {"reason": event.reason})
            for event in events
            if isinstance(event, TextEvent | FinishEvent)
        ]

    def closing(self, run: ChoiceRun) -> list[NamedEvent]:
        return [self._event("toy.completed", {"output_tokens": run.usage().completion_tokens})]

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        return {"id": self.response_id, "output": "".join(collected[0].text)}

    def failure(self, error: GatewayError, body: bytes) -> list[NamedEvent]:
        return [self._event("error", {"message": error.message})]


async def toy_generation(
    body: ToyRequest, model: ServedModel, request_id: str, trace: tuple[tuple[str, str], ...]
) -> Generation:
    request = ConversationRequest(
        Conversation((Turn("user", body.input, param="input"),), param="input"),
        GenerationOptions(max_tokens=body.max_output_tokens, max_tokens_param="max_output_tokens", stream=body.stream),
    )
    response_id = f"toy_{request_id}"
    run = await plan_conversation(request, model, response_id, trace)
    return Generation(run, ToyEncoder(response_id), body.stream)


TOY = GenerationRoute(toy_generation, StreamStyle(named=True, ping=(b"ping", b'{"type":"ping"}')))
TOY_ERRORS = ErrorShape(
    status=lambda error: error.status,
    body=lambda error: orjson.dumps({"type": "error", "error": {"message": error.message}}),
)
router = APIRouter(route_class=JsonBodyRoute)


@router.post("/v1/toy", response_model=None)
async def create_toy(body: ToyRequest, request: Request) -> Response:
    return await serve_generation(request, body, TOY)


@pytest.fixture
async def http(tokenizer: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FakeEngine]]:
    engine = FakeEngine()
    model = ServedModel(DEV_MODEL_NAME, engine, ChatTemplate(tokenizer), TokenCounter(tokenizer), 16, 1000)
    app = create_app(ModelRegistry([model]), Settings())
    app.include_router(router)
    app.state.error_shapes = ErrorShapes((("/v1/toy", TOY_ERRORS),))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client, engine


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in filter(None, text.split("\n\n")):
        name, data = block.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


async def test_a_new_protocol_streams_named_events_through_the_core(http: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, engine = http
    response = await client.post(
        "/v1/toy", json={"model": DEV_MODEL_NAME, "input": "Hi", "stream": True}, headers={"x-request-id": "r1"}
    )
    assert response.status_code == 200 and "[DONE]" not in response.text
    events = named_events(response.text)
    names = [name for name, _ in events]
    assert names == ["toy.created", *["toy.delta"] * 3, "toy.finished", "toy.completed"]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(1, 7))
    assert events[0][1]["id"] == engine.requests[0].request_id == "toy_r1"
    assert "Hi" in engine.requests[0].prompt


async def test_a_new_protocol_reports_failures_its_own_way(http: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, engine = http
    engine.fail_with, engine.fail_after = UpstreamUnavailableError("gone"), 1
    response = await client.post("/v1/toy", json={"model": DEV_MODEL_NAME, "input": "Hi", "stream": True})
    name, data = named_events(response.text)[-1]
    assert (name, data) == ("error", {"type": "error", "sequence_number": 3, "message": "gone"})


async def test_a_new_protocol_gets_the_cores_errors_named_by_its_own_fields(
    http: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, _ = http
    response = await client.post("/v1/toy", json={"model": DEV_MODEL_NAME, "input": "Hi", "max_output_tokens": 5000})
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {
            "message": "max_output_tokens is too large: 5000. This model supports at most 1000 completion tokens."
        },
    }
    whole = await client.post("/v1/toy", json={"model": DEV_MODEL_NAME, "input": "Hi"})
    assert whole.json()["output"] == "Hello world!"
