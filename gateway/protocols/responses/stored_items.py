"""Items as the store keeps them and the API lists them: every item with its `id`, `type` and `status`, message
content as parts (what `input_items`, conversation items and `previous_response_id` give back).

Clients send items in shorter forms (a message without `type`, its content a string; Codex's replayed assistant
messages without `id` or `status`); the stored form is the full one a client reads back.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequestError
from gateway.protocols.responses.output import new_id

ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
ROLES = frozenset({"user", "system", "developer", "assistant"})


def stored_item(item: Any, where: str, keep_id: bool = False) -> dict[str, Any]:
    """The item in its full form, with a fresh id (or its own, with `keep_id`); 400 naming `where` for an item
    that is not one of the four kinds the gateway serves."""
    if not isinstance(item, dict):
        raise InvalidRequestError("Each item must be an object", param=where)
    kind = item.get("type", "message" if "role" in item else None)
    if kind not in ID_PREFIXES:
        raise InvalidRequestError(
            "An item's type must be 'message', 'function_call', 'function_call_output' or 'reasoning'",
            param=f"{where}.type",
        )
    own = item.get("id")
    item_id = own if keep_id and isinstance(own, str) and own else new_id(ID_PREFIXES[kind])
    stored = {"type": kind, "id": item_id, **{k: v for k, v in item.items() if k not in ("type", "id")}}
    if kind == "message":
        _complete_message(stored, where)
    elif kind == "reasoning":
        stored.setdefault("summary", [])
    else:
        for field in ("call_id", *(("name", "arguments") if kind == "function_call" else ("output",))):
            if field not in stored:
                raise InvalidRequestError(
                    f"Missing required parameter: '{where}.{field}'.",
                    param=f"{where}.{field}",
                    code="missing_required_parameter",
                )
    if kind != "reasoning":
        stored.setdefault("status", "completed")
    return stored


def _complete_message(message: dict[str, Any], where: str) -> None:
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequestError(
            "A message's role must be 'user', 'system', 'developer' or 'assistant'", param=f"{where}.role"
        )
    content = message.get("content")
    text_type = "output_text" if role == "assistant" else "input_text"
    if content is None or isinstance(content, str):
        content = [{"type": text_type, "text": content or ""}] if content else []
    elif not isinstance(content, list):
        raise InvalidRequestError("Content must be a string or a list of content parts", param=f"{where}.content")
    parts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequestError(
                "Each content part must be an object with a type", param=f"{where}.content[{index}]"
            )
        if part["type"] == "output_text" and "annotations" not in part:
            part = {**part, "annotations": []}
        parts.append(part)
    message["content"] = parts
