"""Chat image_url parts: decoded in place, sent to an engine that takes images in order, refused where they cannot
go, every error naming the part."""

from __future__ import annotations

import base64

import httpx
import pytest

from gateway.core.request import ImagePart
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import InvalidRequestError
from gateway.protocols.chat_completions.decode import message_content
from gateway.protocols.chat_completions.request import ChatCompletionRequest
from tests.image_server import png
from tests.unit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
RED, BLUE = png(4, 4, (255, 0, 0)), png(6, 6, (0, 0, 255))


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image(url: str, **extra: object) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def body(*messages: dict[str, object]) -> dict[str, object]:
    return {"model": DEV_MODEL_NAME, "messages": list(messages)}


def test_parts_keep_their_order_and_name_their_place() -> None:
    request = ChatCompletionRequest.model_validate(
        body(
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "left "},
                    image("https://a/x.png", detail="low"),
                    {"type": "text", "text": " right "},
                    {"type": "image_url", "image_url": "https://a/y.png"},
                ],
            },
        )
    )
    content = message_content(request.messages[1].content, 1)
    assert content == (
        "left ",
        ImagePart("https://a/x.png", "low", "messages[1].content[1].image_url"),
        " right ",
        ImagePart("https://a/y.png", "auto", "messages[1].content[3].image_url"),
    )


def test_images_outside_user_messages_are_refused() -> None:
    request = ChatCompletionRequest.model_validate(body({"role": "assistant", "content": [image("https://a/x.png")]}))
    with pytest.raises(InvalidRequestError) as caught:
        message_content(request.messages[0].content, 0, "assistant")
    assert caught.value.param == "messages[0].content[0]" and "user messages only" in caught.value.message


@pytest.fixture
def fake_engine() -> FakeEngine:
    """An engine that takes up to two images per request."""
    return FakeEngine(capable=EngineCapabilities("fake", max_images=2))


async def test_images_reach_the_engine_in_order_with_placeholders_in_the_prompt(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    content = [{"type": "text", "text": "first"}, image(data_url(RED)), {"type": "text", "text": "then"}]
    content.append(image(data_url(BLUE)))
    response = await client.post(CHAT, json=body({"role": "user", "content": content}))
    assert response.status_code == 200, response.text
    (request,) = fake_engine.requests
    assert [(i.data, i.width) for i in request.images] == [(RED, 4), (BLUE, 6)]
    assert "first<image>then<image>" in request.prompt


async def test_more_images_than_the_model_takes_is_a_400_naming_the_first_extra(client: httpx.AsyncClient) -> None:
    content = [image(data_url(RED)), image(data_url(RED)), image(data_url(BLUE))]
    response = await client.post(CHAT, json=body({"role": "user", "content": content}))
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "messages[0].content[2].image_url"
    assert error["code"] == "too_many_images"


@pytest.mark.parametrize(
    ("part", "param", "says"),
    [
        (image("data:image/png;base64,!!"), "messages[0].content[1].image_url", "does not decode"),
        (image(data_url(b"GIF89a broken")), "messages[0].content[1].image_url", "not a readable image"),
        (image("ftp://example.com/x.png"), "messages[0].content[1].image_url", "not an http(s) URL"),
        (image(data_url(RED), detail="ultra"), "messages[0].content[1].image_url.detail", "auto"),
        ({"type": "image_url", "image_url": {}}, "messages[0].content[1].image_url.url", "Missing"),
    ],
)
async def test_bad_images_are_400s_naming_the_part(
    client: httpx.AsyncClient, fake_engine: FakeEngine, part: dict[str, object], param: str, says: str
) -> None:
    content = [{"type": "text", "text": "look"}, part]
    response = await client.post(CHAT, json=body({"role": "user", "content": content}))
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param and says in error["message"], error
    assert fake_engine.requests == []


async def test_text_that_writes_the_placeholder_itself_is_refused_by_a_vision_model(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    content = [{"type": "text", "text": "what is <image>?"}, image(data_url(RED))]
    response = await client.post(CHAT, json=body({"role": "user", "content": content}))
    assert response.status_code == 400 and "placeholder" in response.json()["error"]["message"]
    assert fake_engine.requests == []
