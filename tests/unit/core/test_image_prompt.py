"""Images in the prompt: in their place among the text, as image parts for templates that render them, as the
family's placeholder otherwise; one placeholder per image, or a 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.core.prompt import check_image_placeholders, render_prompt, template_message
from gateway.core.request import Conversation, ImagePart, Turn
from gateway.core.tokens import ChatTemplate
from gateway.errors import InvalidRequestError

RED = ImagePart("data:image/png;base64,AAAA", "auto", "messages[0].content[1].image_url")
BLUE = ImagePart("https://example.com/blue.png", "low", "messages[0].content[3].image_url")
# The shape of Hugging Face's LLaVA templates: each part rendered by its type.
VISION_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{% else %}{{ item['text'] }}"
    "{% endif %}{% endfor %}\n{% endfor %}ASSISTANT:"
)


def turn_with_images() -> Turn:
    content = ("Compare ", RED, " with ", BLUE, ".")
    return Turn("user", "Compare  with .", param="messages[0]", content=content)


def test_templates_that_render_image_parts_get_parts_in_order() -> None:
    message = template_message(turn_with_images(), image_parts=True)
    assert message["content"] == [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " with "},
        {"type": "image"},
        {"type": "text", "text": "."},
    ]


def test_string_templates_get_the_placeholder_in_the_text() -> None:
    message = template_message(turn_with_images(), image_parts=False, image_placeholder="<|image|>")
    assert message["content"] == "Compare <|image|> with <|image|>."
    assert template_message(Turn("user", "plain"))["content"] == "plain"


def test_the_dev_template_gets_placeholders_inline(tokenizer: Any) -> None:
    template = ChatTemplate(tokenizer)
    assert not template.renders_image_parts
    prompt = render_prompt(Conversation((turn_with_images(),)), template)
    assert "Compare <image> with <image>." in prompt


def test_a_vision_template_renders_its_own_image_parts(tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "vision.jinja"
    path.write_text(VISION_TEMPLATE)
    template = ChatTemplate(tokenizer, path)
    assert template.renders_image_parts
    prompt = render_prompt(Conversation((turn_with_images(),)), template, image_placeholder="[IGNORED]")
    assert prompt.startswith("USER: Compare <image> with <image>.")  # (HF renders with trim_blocks)


@pytest.mark.parametrize(("prompt", "images"), [("a <image> b", 2), ("<image><image>", 1), ("<image>", 0)])
def test_a_placeholder_count_unlike_the_image_count_is_a_400(prompt: str, images: int) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_image_placeholders(prompt, "<image>", images, "messages")
    assert caught.value.param == "messages" and "placeholder" in caught.value.message
    check_image_placeholders("x <image> y <image>", "<image>", 2, "messages")


def test_a_conversation_lists_its_images_in_order() -> None:
    later = Turn("user", "", content=(RED,))
    assert Conversation((Turn("system", "s"), turn_with_images(), later)).images() == [RED, BLUE, RED]
