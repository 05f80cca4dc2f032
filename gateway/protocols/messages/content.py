"""`system` and `messages` as the core's conversation: content blocks -> turns, in the order the client gave.

- `system` (a string or text blocks) and the system messages that open `messages` make the first system turn;
  Claude Code's later system messages stay where they are (moving them to the top would change the head of the
  prompt every turn and defeat prefix caching);
- Claude Code's billing header (a text block `x-anthropic-billing-header: ...; cch=<nonce>;`, different on every
  request) is dropped wherever it appears, so that consecutive turns share their prefix;
- user blocks: `text`, `image` (its `source`: `base64` with `media_type` and `data`, or `url`; in its place among
  the text, for a vision model), and `tool_result` (a string or text and image blocks, `is_error`), which become
  tool turns ahead of the user's own text, as they answer the assistant turn before;
- assistant blocks: `text`, `tool_use` (its `input` object as the call's arguments), `thinking` (its signature
  checked, its text given back to the template as the turn's reasoning) and `redacted_thinking` (accepted and
  not rendered: the gateway never issues one, so it holds nothing this model said);
- `document` and server-tool blocks, images by `file_id` and images in assistant messages are refused with a 400
  naming the block and its type (or field), and so is a final assistant message (a prefill to continue: the chat
  template would close it instead).
"""

from __future__ import annotations

from typing import Any, NoReturn

from gateway.core.request import Conversation, ImagePart, ToolCall, Turn
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.messages.ids import call_id_of_tool_use
from gateway.protocols.messages.request import ConversationFields, InputMessage
from gateway.protocols.messages.signatures import ThinkingSigner

BILLING_HEADER = "x-anthropic-billing-header"
_MEDIA = ("image", "document")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")  # what Anthropic's API takes


def conversation_of(body: ConversationFields, signer: ThinkingSigner) -> Conversation:
    """The request's turns: the system turn first, then every message's turns in order."""
    messages = body.messages
    leading = 0
    while leading < len(messages) and messages[leading].role == "system":
        leading += 1
    system = [system_text(body.system, "system")]
    system += [system_text(messages[i].content, f"messages[{i}].content") for i in range(leading)]
    text = "\n\n".join(part for part in system if part)
    turns = [Turn("system", text, param="system")] if text else []
    for index in range(leading, len(messages)):
        turns += message_turns(messages[index], index, signer)
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role != "system"), None)
    if last is not None and messages[last].role == "assistant":
        # The template would close that turn and open a new one: the answer would not continue it.
        raise UnsupportedFeatureError(
            "A final assistant message (prefill) is not supported: the conversation must end with a user turn",
            param=f"messages[{last}]",
        )
    return Conversation(tuple(turns), param="messages")


def system_text(system: str | list[dict[str, Any]] | None, where: str) -> str:
    """The text of a system prompt or system message (text blocks only), without Claude Code's billing header."""
    if system is None:
        return ""
    if isinstance(system, str):
        if system.startswith(BILLING_HEADER):
            _, _, system = system.partition("\n")
        return system
    texts = []
    for index, block in enumerate(system):
        text = block_text(block, f"{where}[{index}]")
        if not text.startswith(BILLING_HEADER):
            texts.append(text)
    return "".join(texts)


def message_turns(message: InputMessage, index: int, signer: ThinkingSigner) -> list[Turn]:
    """The turns of one message."""
    where = f"messages[{index}]"
    if message.role == "system":
        text = system_text(message.content, f"{where}.content")
        return [Turn("system", text, param=where)] if text else []
    if isinstance(message.content, str):
        return [Turn(message.role, message.content, param=where)]
    if message.role == "user":
        return _user_turns(message.content, where)
    return [_assistant_turn(message.content, where, signer)]


def _user_turns(blocks: list[dict[str, Any]], where: str) -> list[Turn]:
    results: list[Turn] = []
    parts: list[str | ImagePart] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        kind = block_type(block, at)
        if kind == "text":
            parts.append(block_text(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at))
        else:
            _refuse(kind, at, "user")
    if results and not parts:
        return results
    text = "".join(part for part in parts if isinstance(part, str))
    images = any(isinstance(part, ImagePart) for part in parts)
    return [*results, Turn("user", text, param=where, content=tuple(parts) if images else ())]


def _image(block: dict[str, Any], at: str) -> ImagePart:
    """An image block as the core's image part: base64 data as a `data:` URL, or the URL."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequestError("An image block needs a 'source' object", param=f"{at}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequestError(
                f"'media_type' must be one of {', '.join(IMAGE_MEDIA_TYPES)}", param=f"{at}.source.media_type"
            )
        if not isinstance(data, str) or not data:
            raise InvalidRequestError("A base64 image source needs its 'data'", param=f"{at}.source.data")
        return ImagePart(f"data:{media_type};base64,{data}", param=f"{at}.source")
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequestError("A url image source needs its 'url'", param=f"{at}.source.url")
        return ImagePart(url, param=f"{at}.source")
    if kind == "file":
        raise UnsupportedFeatureError(
            "Images by file_id are not supported (there is no Files API): send base64 data or a URL",
            param=f"{at}.source.type",
        )
    raise InvalidRequestError("An image source's type must be 'base64' or 'url'", param=f"{at}.source.type")


def _tool_result(block: dict[str, Any], at: str) -> Turn:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError("A tool_result block needs 'tool_use_id'", param=f"{at}.tool_use_id")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise InvalidRequestError("'is_error' must be a boolean", param=f"{at}.is_error")
    parts = _tool_result_parts(block.get("content"), f"{at}.content")
    images = any(isinstance(part, ImagePart) for part in parts)
    return Turn(
        "tool",
        "".join(part for part in parts if isinstance(part, str)),
        param=at,
        call_id=call_id_of_tool_use(call_id),
        call_id_param=f"{at}.tool_use_id",
        is_error=bool(is_error),
        content=tuple(parts) if images else (),
    )


def _tool_result_parts(content: Any, where: str) -> list[str | ImagePart]:
    """A tool result's content: a string, or its text and image blocks in order, one per line (a screenshot or an
    image file a tool read). `tool_reference` blocks (Claude Code's tool search) name a tool to load: every tool is
    in the prompt already, so they add nothing."""
    if content is None or isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise InvalidRequestError("A tool result's content must be a string or a list of blocks", param=where)
    parts: list[str | ImagePart] = []
    for index, block in enumerate(content):
        at = f"{where}[{index}]"
        kind = block_type(block, at)
        if kind == "tool_reference":
            continue
        if kind == "text":
            part: str | ImagePart = block_text(block, at)
        elif kind == "image":
            part = _image(block, at)
        else:
            _refuse(kind, at, "tool_result")
        parts += ["\n", part] if parts else [part]
    return parts


def _assistant_turn(blocks: list[dict[str, Any]], where: str, signer: ThinkingSigner) -> Turn:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        kind = block_type(block, at)
        if kind == "text":
            texts.append(block_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_use(block, at))
        elif kind == "thinking":
            reasoning.append(_verified_thinking(block, at, signer))
        elif kind != "redacted_thinking":
            _refuse(kind, at, "assistant")
    return Turn(
        "assistant",
        "".join(texts),
        param=where,
        tool_calls=tuple(calls),
        reasoning="".join(reasoning) if reasoning else None,
    )


def _tool_use(block: dict[str, Any], at: str) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError("A tool_use block needs an 'id'", param=f"{at}.id")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("A tool_use block needs a 'name'", param=f"{at}.name")
    if not isinstance(arguments, dict):
        raise InvalidRequestError("A tool_use block's 'input' must be an object", param=f"{at}.input")
    return ToolCall(call_id_of_tool_use(call_id), name, arguments)


def _verified_thinking(block: dict[str, Any], at: str, signer: ThinkingSigner) -> str:
    thinking, signature = block.get("thinking"), block.get("signature")
    if not isinstance(thinking, str):
        raise InvalidRequestError("A thinking block needs its 'thinking' text", param=f"{at}.thinking")
    if not isinstance(signature, str) or not signer.verify(thinking, signature):
        raise InvalidRequestError(
            "Invalid 'signature' in thinking block: only thinking this gateway returned, unchanged, can be sent back",
            param=f"{at}.signature",
        )
    return thinking


def block_type(block: dict[str, Any], at: str) -> str:
    """A content block's `type`."""
    kind = block.get("type")
    if not isinstance(kind, str):
        raise InvalidRequestError("A content block needs a 'type'", param=f"{at}.type")
    return kind


def block_text(block: dict[str, Any], at: str) -> str:
    """A text block's text (any other block here is a 400)."""
    kind = block_type(block, at)
    if kind != "text":
        raise InvalidRequestError(f"Only text blocks are allowed here, not '{kind}'", param=f"{at}.type")
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequestError("A text block needs its 'text'", param=f"{at}.text")
    return text


def _refuse(kind: str, at: str, where: str) -> NoReturn:
    if kind == "image":
        raise UnsupportedFeatureError(
            f"'image' blocks are taken in user messages and tool results, not in {where} content", param=f"{at}.type"
        )
    if kind in _MEDIA:
        raise UnsupportedFeatureError(f"'{kind}' content blocks are not supported", param=f"{at}.type")
    shown = kind if len(kind) <= 64 else kind[:64] + "..."
    raise UnsupportedFeatureError(f"'{shown}' blocks are not supported in {where} content", param=f"{at}.type")
