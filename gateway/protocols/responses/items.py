"""Responses' `instructions` and `input` as the core's conversation.

`input` is a string (one user message) or a list of items:
- `message` (the `type` may be left out): `user`, `system`, `developer` (a system turn for templates) and
  `assistant`; content a string or parts `input_text`, `output_text`, `refusal`, and in user messages
  `input_image` (`image_url`: a `data:` URL or an http(s) URL, `detail`), in its place among the text. Replayed
  assistant messages come as the API returned them or without `id` and `status`, with empty content, as Codex
  sends them;
- `function_call` (`call_id`, `name`, `arguments` as a string: a JSON object, or kept as written when the model
  cut it short) and `function_call_output` (`call_id`, `output` a string or text and image parts): a tool turn,
  which the core checks answers an earlier call (`input[i].call_id` named otherwise);
- `reasoning`: its `reasoning_text` content, or what its `encrypted_content` seals (checked, 400 when altered),
  or its summary, given to the template as the assistant's reasoning (chat's `reasoning_content`).
Consecutive assistant-side items (reasoning, messages, calls) make one assistant turn, as one model turn wrote
them. `instructions` is this request's system turn, before everything else. Images by `file_id`, images in system
or assistant messages, files, audio and the items of tools the gateway does not have are a 400 naming their field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.core.request import Conversation, ImagePart, Role, ToolCall, Turn
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.openai_shared import arguments_problem, decode_arguments
from gateway.protocols.sealing import Sealer

REASONING_PURPOSE = b"responses.reasoning"  # what a sealed reasoning blob is for (sealing.py)
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_UNSUPPORTED_PARTS = frozenset({"input_file", "input_audio"})
_DETAILS = (None, "auto", "low", "high")
_ROLES: dict[str, Role] = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def conversation_of(
    input_value: Any,
    instructions: str | None,
    sealer: Sealer,
    truncate: bool = False,
    history: Sequence[Any] = (),
    history_field: str = "previous_response_id",
) -> Conversation:
    """The turns of `instructions`, the stored `history` (what `previous_response_id` or `conversation` brings in,
    its items named `history_field[i]`) and `input`; 400 naming the field of the first item that cannot be used."""
    turns = [Turn("system", instructions, param="instructions")] if instructions else []
    turns += _item_turns(list(history), sealer, history_field)
    if input_value is None:
        raise InvalidRequestError(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if isinstance(input_value, str):
        turns.append(Turn("user", input_value, param="input"))
    elif isinstance(input_value, list):
        turns += _item_turns(input_value, sealer)
    else:
        raise InvalidRequestError("'input' must be a string or a list of items", param="input")
    return Conversation(tuple(turns), param="input", truncate=truncate)


def _item_turns(items: list[Any], sealer: Sealer, field: str = "input") -> list[Turn]:
    turns: list[Turn] = []
    assistant: Turn | None = None  # the model turn being gathered from consecutive assistant-side items
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequestError("Each input item must be an object", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        role_name = item.get("role")
        role = _ROLES.get(role_name) if kind == "message" and isinstance(role_name, str) else None
        if kind in ("function_call", "reasoning") or role == "assistant":
            if assistant is None:
                assistant = Turn("assistant", param=where)
                turns.append(assistant)
            _add_to_assistant(assistant, kind, item, where, sealer)
            continue
        assistant = None
        if kind == "message":
            if role is None:
                raise InvalidRequestError(
                    "A message's role must be 'user', 'system', 'developer' or 'assistant'", param=f"{where}.role"
                )
            turns.append(_message_turn(role, item.get("content"), where))
        elif kind == "function_call_output":
            call_id = _required_string(item, "call_id", where)
            text, content = _with_images(item.get("output"), f"{where}.output")
            turns.append(Turn("tool", text, where, call_id=call_id, call_id_param=f"{where}.call_id", content=content))
        else:
            _refuse_item(kind, where)
    return turns


def _add_to_assistant(turn: Turn, kind: Any, item: dict[str, Any], where: str, sealer: Sealer) -> None:
    if kind == "function_call":
        turn.tool_calls += (_call(item, where),)
    elif kind == "reasoning":
        text = reasoning_text(item, where, sealer)
        turn.reasoning = text if turn.reasoning is None else f"{turn.reasoning}\n{text}"
    else:
        text = content_text(item.get("content"), f"{where}.content")
        turn.text = f"{turn.text}\n{text}" if turn.text and text else turn.text or text


def _call(item: dict[str, Any], where: str) -> ToolCall:
    call_id = _required_string(item, "call_id", where)
    name = _required_string(item, "name", where)
    raw = item.get("arguments", "")
    if not isinstance(raw, str):
        raise InvalidRequestError("'arguments' must be a string", param=f"{where}.arguments")
    arguments = decode_arguments(raw)
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, raw)  # the model cut it short: the template writes it as it was
    problem = arguments_problem(arguments)
    if problem is not None:
        raise InvalidRequestError(f"The call's 'arguments' cannot be used: {problem}", param=f"{where}.arguments")
    return ToolCall(call_id, name, arguments)


def reasoning_text(item: dict[str, Any], where: str, sealer: Sealer) -> str:
    """A reasoning item's text: what `encrypted_content` seals (opened, so an altered blob is refused), else its
    `reasoning_text` content, else its summary."""
    sealed = item.get("encrypted_content")
    if sealed is not None:
        if not isinstance(sealed, str):
            raise InvalidRequestError("'encrypted_content' must be a string", param=f"{where}.encrypted_content")
        return sealer.open(sealed, REASONING_PURPOSE, f"{where}.encrypted_content")
    for field, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(field)
        if parts is None:
            continue
        if not isinstance(parts, list):
            raise InvalidRequestError(f"'{field}' must be a list", param=f"{where}.{field}")
        texts = []
        for index, part in enumerate(parts):
            if not isinstance(part, dict) or part.get("type") != part_type or not isinstance(part.get("text"), str):
                raise InvalidRequestError(
                    f"Each '{field}' part must be {{'type': '{part_type}', 'text': ...}}",
                    param=f"{where}.{field}[{index}]",
                )
            texts.append(part["text"])
        if texts:
            return "\n".join(texts)
    return ""


def _message_turn(role: Role, content: Any, where: str) -> Turn:
    if role != "user":
        return Turn(role, content_text(content, f"{where}.content"), param=where)
    text, parts = _with_images(content, f"{where}.content")
    return Turn(role, text, param=where, content=parts)


def _with_images(content: Any, where: str) -> tuple[str, tuple[str | ImagePart, ...]]:
    """Content that may hold images (a user message's, a tool's output): its text, and its parts when it has
    images."""
    if not isinstance(content, list):
        return content_text(content, where), ()
    parts = content_parts(content, where, images=True)
    text = "".join(part for part in parts if isinstance(part, str))
    return text, tuple(parts) if any(isinstance(part, ImagePart) for part in parts) else ()


def content_text(content: Any, where: str) -> str:
    """A message's content (or a tool output) as one string: a string, or its text parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part for part in content_parts(content, where, images=False) if isinstance(part, str))


def content_parts(content: Any, where: str, images: bool) -> list[str | ImagePart]:
    """A content list's texts, and its images where they are taken (`images`), in order."""
    if not isinstance(content, list):
        raise InvalidRequestError("Content must be a string or a list of content parts", param=where)
    parts: list[str | ImagePart] = []
    for index, part in enumerate(content):
        part_where = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS or kind == "refusal":
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise InvalidRequestError("A text part needs its text as a string", param=part_where)
            parts.append(text)
        elif kind == "input_image" and images:
            parts.append(_image(part, part_where))
        elif kind == "input_image":
            raise UnsupportedFeatureError(
                "input_image parts are taken in user messages and function call outputs only",
                param=f"{part_where}.type",
            )
        elif kind in _UNSUPPORTED_PARTS:
            raise UnsupportedFeatureError(
                f"Content parts of type '{kind}' are not supported (text and input_image only)",
                param=f"{part_where}.type",
            )
        else:
            raise InvalidRequestError(
                "A content part's type must be 'input_text', 'input_image', 'output_text' or 'refusal'",
                param=f"{part_where}.type",
            )
    return parts


def _image(part: dict[str, Any], where: str) -> ImagePart:
    """An `input_image` part: its URL (a file_id needs a Files API this gateway does not have) and detail."""
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise UnsupportedFeatureError(
            "Images by file_id are not supported: send image_url (a data: URL or an http(s) URL)",
            param=f"{where}.file_id",
        )
    if not isinstance(url, str) or not url:
        raise missing(f"{where}.image_url")
    detail = part.get("detail")
    if detail not in _DETAILS:
        raise InvalidRequestError("'detail' must be 'low', 'high' or 'auto'", param=f"{where}.detail")
    return ImagePart(url, detail or "auto", param=f"{where}.image_url")


def _required_string(item: dict[str, Any], field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"Missing required parameter: '{where}.{field}'.",
            param=f"{where}.{field}",
            code="missing_required_parameter",
        )
    return value


def missing(param: str) -> InvalidRequestError:
    """The error for a required field left out (OpenAI's wording)."""
    return InvalidRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _refuse_item(kind: Any, where: str) -> None:
    if kind == "item_reference":
        raise InvalidRequestError(
            "Item references are not supported: send the item itself (or continue with previous_response_id)",
            param=where,
            code="unsupported_parameter",
        )
    if isinstance(kind, str) and kind.endswith(("_call", "_call_output", "_tools", "_request", "_response")):
        raise UnsupportedFeatureError(
            f"Input items of type '{kind[:64]}' are not supported: this gateway serves function tools only",
            param=f"{where}.type",
        )
    raise InvalidRequestError(
        "An input item's type must be 'message', 'function_call', 'function_call_output' or 'reasoning'",
        param=f"{where}.type",
    )
