"""Messages image blocks: base64 and URL sources decoded in place among the text, sent to an engine that takes
images in order, refused where they cannot go, every error naming the block."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from gateway.core.request import ImagePart
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from tests.image_server import png
from tests.unit.fake_engine import FakeEngine
from tests.unit.protocols.messages.test_decode import decode

RED, BLUE = png(4, 4, (255, 0, 0)), png(6, 6, (0, 0, 255))


def base64_image(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()},
    }


def url_image(url: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "url", "url": url}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def test_blocks_keep_their_order_and_name_their_place() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}
    call = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result, text("left "), base64_image(RED), text(" right"),
                                             url_image("https://a/x.png")]}]  # fmt: skip
    *_, tool, user = decode(messages=messages).conversation.turns
    assert (tool.role, tool.text, tool.content) == ("tool", "42", ())
    assert user.text == "left  right"
    assert user.content == (
        "left ",
        ImagePart(f"data:image/png;base64,{base64.b64encode(RED).decode()}", "auto", "messages[2].content[2].source"),
        " right",
        ImagePart("https://a/x.png", "auto", "messages[2].content[4].source"),
    )


def test_a_tool_result_may_hold_images_one_block_per_line() -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/a.png"}}
    blocks = [text("the file:"), url_image("https://a/x.png"), {"type": "tool_reference", "tool_name": "x"}]
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": blocks}
    messages = [{"role": "user", "content": "read it"}, {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result]}]  # fmt: skip
    tool = decode(messages=messages).conversation.turns[-1]
    assert (tool.role, tool.text) == ("tool", "the file:\n")
    assert tool.content == (
        "the file:",
        "\n",
        ImagePart("https://a/x.png", "auto", "messages[2].content[0].content[1].source"),
    )


@pytest.mark.parametrize(
    ("role", "block", "param", "unsupported"),
    [
        ("assistant", url_image("https://a/x.png"), "content[0].type", True),
        ("user", {"type": "image", "source": {"type": "file", "file_id": "f"}}, "content[0].source.type", True),
        ("user", {"type": "image"}, "content[0].source", False),
        ("user", {"type": "image", "source": {"type": "url"}}, "content[0].source.url", False),
        ("user", base64_image(RED, "image/tiff"), "content[0].source.media_type", False),
        ("user", {"type": "image", "source": {"type": "base64", "media_type": "image/png"}},
         "content[0].source.data", False),
        ("user", {"type": "image", "source": {"type": "s3", "url": "x"}}, "content[0].source.type", False),
    ],
)  # fmt: skip
def test_images_that_cannot_be_used_are_400s_naming_them(
    role: str, block: dict[str, Any], param: str, unsupported: bool
) -> None:
    messages = [{"role": "user", "content": "Hi"}] if role == "assistant" else []
    messages.append({"role": role, "content": [block]})
    if role == "assistant":
        messages.append({"role": "user", "content": "and?"})
    with pytest.raises(InvalidRequestError) as caught:
        decode(messages=messages)
    where = len(messages) - (2 if role == "assistant" else 1)
    assert caught.value.param == f"messages[{where}].{param}"
    assert isinstance(caught.value, UnsupportedFeatureError) == unsupported


@pytest.fixture
def fake_engine() -> FakeEngine:
    """An engine that takes up to two images per request."""
    return FakeEngine(capable=EngineCapabilities("fake", max_images=2))


async def test_images_reach_the_engine_in_order(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    content = [text("first"), base64_image(RED), text("then"), base64_image(BLUE)]
    body = {"model": DEV_MODEL_NAME, "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    (request,) = fake_engine.requests
    assert [(i.data, i.width) for i in request.images] == [(RED, 4), (BLUE, 6)]
    assert "first<image>then<image>" in request.prompt


async def test_bad_or_unserved_images_are_anthropic_400s_naming_the_block(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    for block, says in ((base64_image(b"GIF89a broken"), "not a readable image"),
                        (url_image("ftp://example.com/x.png"), "not an http(s) URL")):  # fmt: skip
        body = {
            "model": DEV_MODEL_NAME,
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [text("x"), block]}],
        }
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and says in error["message"], error
        assert "messages[0].content[1].source" in error["message"], error
    fake_engine.capable = EngineCapabilities("fake")  # a text model's declared inputs
    body["messages"] = [{"role": "user", "content": [text("x"), base64_image(RED)]}]
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 400 and "takes no images" in response.json()["error"]["message"]
    assert fake_engine.requests == []


async def test_an_image_a_tool_returned_reaches_the_engine_in_the_tool_turn(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/a.png"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [text("shot"), base64_image(BLUE)]}
    messages = [{"role": "user", "content": [text("read it"), base64_image(RED)]},
                {"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]  # fmt: skip
    response = await client.post("/v1/messages", json={"model": DEV_MODEL_NAME, "max_tokens": 10, "messages": messages})
    assert response.status_code == 200, response.text
    (request,) = fake_engine.requests
    assert [i.data for i in request.images] == [RED, BLUE]
    assert request.prompt.index("read it<image>") < request.prompt.index("shot\n<image>")


async def test_counting_tokens_refuses_images_a_model_does_not_take(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": [text("x"), base64_image(RED)]}]}
    counted = await client.post("/v1/messages/count_tokens", json=body)
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0, counted.text
    fake_engine.capable = EngineCapabilities("fake")  # a text model's declared inputs
    refused = await client.post("/v1/messages/count_tokens", json=body)
    assert refused.status_code == 400 and "messages[0].content[1].source" in refused.json()["error"]["message"]
