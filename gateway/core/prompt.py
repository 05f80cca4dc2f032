"""A conversation as a prompt: its turns in the form chat templates take, the tools, and reasoning options.

Reasoning options reach templates under the names the model families' templates read: `reasoning_effort`
(gpt-oss style), `enable_thinking` (Qwen3), `thinking` (DeepSeek V3.1), `thinking_budget`; only those the
template reads are passed, so a template that knows none of them renders as before.

Images stay in their place among a turn's text: as `{"type": "image"}` parts for templates that render image
parts (Hugging Face's vision templates), else as the model family's placeholder (`<image>`, `<|image|>`) written
into the text. Either way the rendered prompt must hold one placeholder per image (`check_image_placeholders`):
the upstream's preprocessing puts each image's embeddings where its placeholder is.
"""

from __future__ import annotations

from typing import Any

from gateway.core.request import Conversation, ImagePart, ReasoningOptions, Turn
from gateway.core.tokens import ChatTemplate
from gateway.errors import InvalidRequestError


def render_prompt(
    conversation: Conversation,
    template: ChatTemplate,
    tools: list[dict[str, Any]] | None = None,
    reasoning: ReasoningOptions | None = None,
    image_placeholder: str = "<image>",
) -> str:
    """The prompt for the conversation, ending with the assistant's turn header."""
    parts = template.renders_image_parts
    messages = [template_message(turn, parts, image_placeholder) for turn in conversation.turns]
    variables = reasoning_variables(reasoning, template) if reasoning is not None else None
    return template.render(messages, tools, variables, conversation.param)


def template_message(turn: Turn, image_parts: bool = False, image_placeholder: str = "<image>") -> dict[str, Any]:
    """One turn as chat templates take it: tool call arguments as objects, reasoning as `reasoning_content`,
    images as content parts (`image_parts`) or as the placeholder in the text."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.text}
    if turn.content:
        message["content"] = content_with_images(turn.content, image_parts, image_placeholder)
    if turn.name is not None:
        message["name"] = turn.name
    if turn.reasoning is not None:
        message["reasoning_content"] = turn.reasoning
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in turn.tool_calls
        ]
    if turn.call_id is not None:
        message["tool_call_id"] = turn.call_id
    if turn.is_error:
        message["is_error"] = True
    return message


def reasoning_variables(reasoning: ReasoningOptions, template: ChatTemplate) -> dict[str, Any]:
    """The template variables for the reasoning options, those the template reads."""
    candidates: dict[str, Any] = {}
    if reasoning.effort is not None:
        candidates["reasoning_effort"] = reasoning.effort
    if reasoning.enabled is not None:
        candidates["enable_thinking"] = candidates["thinking"] = reasoning.enabled
    if reasoning.budget_tokens is not None:
        candidates["thinking_budget"] = reasoning.budget_tokens
    return {name: value for name, value in candidates.items() if template.takes(name)}


def content_with_images(content: tuple[str | ImagePart, ...], image_parts: bool, placeholder: str) -> Any:
    """A turn's text and images in order: a list of text and image parts, or one string with placeholders."""
    if image_parts:
        return [{"type": "text", "text": item} if isinstance(item, str) else {"type": "image"} for item in content]
    return "".join(item if isinstance(item, str) else placeholder for item in content)


def check_image_placeholders(prompt: str, placeholder: str, images: int, param: str) -> None:
    """400 unless the rendered prompt holds exactly one placeholder per image (a template that drops an image,
    or text that writes the placeholder itself, would shift every image after it)."""
    found = prompt.count(placeholder)
    if found != images:
        raise InvalidRequestError(
            f"the prompt holds {found} image placeholder(s) '{placeholder}' for {images} image(s): images must be "
            f"in turns the chat template renders, and text must not contain '{placeholder}'",
            param=param,
        )
