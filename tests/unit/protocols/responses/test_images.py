"""Responses input_image parts: decoded in place among the text, sent to an engine that takes images in order,
refused where they cannot go, every error naming the part; a stored response's images come back with its history."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.core.request import ImagePart
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.responses.items import conversation_of
from gateway.protocols.sealing import Sealer
from tests.image_server import png
from tests.unit.fake_engine import FakeEngine
from tests.unit.protocols.chat_completions.test_images import data_url

RESPONSES = "/v1/responses"
RED, BLUE = png(4, 4, (255, 0, 0)), png(6, 6, (0, 0, 255))
SEALER = Sealer("unit-test-state-key-0123456789")


def image(url: str, **extra: object) -> dict[str, object]:
    return {"type": "input_image", "image_url": url, **extra}


def user(*content: dict[str, object]) -> dict[str, object]:
    return {"role": "user", "content": list(content)}


def text(value: str) -> dict[str, object]:
    return {"type": "input_text", "text": value}


def test_parts_keep_their_order_and_name_their_place() -> None:
    items = [{"role": "developer", "content": "be brief"}, user(text("left "), image("https://a/x.png", detail="low"),
             text(" right "), image("https://a/y.png"))]  # fmt: skip
    turn = conversation_of(items, None, SEALER).turns[1]
    assert turn.text == "left  right "
    assert turn.content == (
        "left ",
        ImagePart("https://a/x.png", "low", "input[1].content[1].image_url"),
        " right ",
        ImagePart("https://a/y.png", "auto", "input[1].content[3].image_url"),
    )


def test_a_function_call_output_may_hold_images() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "screenshot", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": [text("shot: "), image("https://a/s.png")]}
    tool = conversation_of([user(text("look")), call, output], None, SEALER).turns[-1]
    assert (tool.role, tool.text, tool.call_id) == ("tool", "shot: ", "c1")
    assert tool.content == ("shot: ", ImagePart("https://a/s.png", "auto", "input[2].output[1].image_url"))


def test_a_text_only_message_carries_no_parts() -> None:
    assert conversation_of([user(text("a"), text("b"))], None, SEALER).turns[0].content == ()


@pytest.mark.parametrize(
    ("items", "param", "unsupported"),
    [
        ([{"role": "assistant", "content": [image("https://a/x.png")]}], "input[0].content[0].type", True),
        ([{"role": "system", "content": [image("https://a/x.png")]}], "input[0].content[0].type", True),
        ([user({"type": "input_image", "file_id": "file-1"})], "input[0].content[0].file_id", True),
        ([user({"type": "input_image"})], "input[0].content[0].image_url", False),
        ([user(image("https://a/x.png", detail="ultra"))], "input[0].content[0].detail", False),
        ([user(image("https://a/x.png", detail=["low"]))], "input[0].content[0].detail", False),
        ([user({"type": "input_file", "file_id": "f"})], "input[0].content[0].type", True),
    ],
)
def test_images_that_cannot_be_used_are_400s_naming_them(items: Any, param: str, unsupported: bool) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        conversation_of(items, None, SEALER)
    assert refused.value.param == param
    assert isinstance(refused.value, UnsupportedFeatureError) == unsupported


@pytest.fixture
def fake_engine() -> FakeEngine:
    """An engine that takes up to two images per request."""
    return FakeEngine(capable=EngineCapabilities("fake", max_images=2))


async def test_images_reach_the_engine_in_order_and_come_back_with_the_history(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    items = [user(text("first"), image(data_url(RED)), text("then"), image(data_url(BLUE)))]
    response = await client.post(RESPONSES, json={"model": DEV_MODEL_NAME, "input": items})
    assert response.status_code == 200, response.text
    request = fake_engine.requests[-1]
    assert [(i.data, i.width) for i in request.images] == [(RED, 4), (BLUE, 6)]
    assert "first<image>then<image>" in request.prompt
    follow_up = {"model": DEV_MODEL_NAME, "input": "and now?", "previous_response_id": response.json()["id"]}
    again = await client.post(RESPONSES, json=follow_up)
    assert again.status_code == 200, again.text
    assert [i.data for i in fake_engine.requests[-1].images] == [RED, BLUE]


@pytest.mark.parametrize(
    ("part", "says"),
    [
        (image("data:image/png;base64,!!"), "does not decode"),
        (image(data_url(b"GIF89a broken")), "not a readable image"),
        (image("ftp://example.com/x.png"), "not an http(s) URL"),
    ],
)
async def test_bad_images_are_400s_naming_the_part(
    client: httpx.AsyncClient, fake_engine: FakeEngine, part: dict[str, object], says: str
) -> None:
    body = {"model": DEV_MODEL_NAME, "input": [user(text("look"), part)]}
    response = await client.post(RESPONSES, json=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "input[0].content[1].image_url", error
    assert says in error["message"] and fake_engine.requests == []


async def test_a_model_without_image_inputs_refuses_them_naming_the_part(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.capable = EngineCapabilities("fake")  # a text model's declared inputs
    body = {"model": DEV_MODEL_NAME, "input": [user(text("look"), image(data_url(RED)))]}
    response = await client.post(RESPONSES, json=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "input[0].content[1].image_url", error
    assert error["code"] == "images_not_supported" and fake_engine.requests == []


async def test_truncation_sends_only_the_images_of_the_turns_it_keeps(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    app.state.registry.all()[0].max_prompt_tokens = 200
    filler = " ".join(f"word{i}" for i in range(300))
    items = [user(text(f"old {filler}"), image(data_url(RED))), {"role": "assistant", "content": "seen"},
             user(text("new"), image(data_url(BLUE)))]  # fmt: skip
    response = await client.post(RESPONSES, json={"model": DEV_MODEL_NAME, "input": items, "truncation": "auto"})
    assert response.status_code == 200, response.text
    request = fake_engine.requests[-1]
    assert "word0" not in request.prompt and request.prompt.count("<image>") == 1
    assert [i.data for i in request.images] == [BLUE]
