"""What the store keeps of a response, in the Responses API's terms: this turn's input items, the history a new
turn brings in (`previous_response_id`: every earlier turn's input and output; `conversation`: its items), the
items a turn adds to its conversation, and the objects of a response that was queued, cancelled or lost.

The store holds JSON bytes it never reads; this module writes and reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequestError
from gateway.protocols.responses.stored_items import stored_item


@dataclass(frozen=True, slots=True)
class History:
    """Stored items a turn continues from, and the field that brought them in (for errors naming one)."""

    items: tuple[dict[str, Any], ...] = ()
    field: str = "previous_response_id"


NO_HISTORY = History()


def conversation_id_of(value: Any) -> str | None:
    """`conversation`: an id, or an object with one."""
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    raise InvalidRequestError("'conversation' must be a conversation id or {'id': ...}", param="conversation")


def turn_input(input_value: Any) -> list[dict[str, Any]]:
    """This turn's input as stored items (a string is one user message); ids given by the client are kept."""
    if isinstance(input_value, str):
        return [stored_item({"role": "user", "content": input_value}, "input")]
    return [stored_item(item, f"input[{index}]", keep_id=True) for index, item in enumerate(input_value or [])]


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's output items."""
    output = response.get("output")
    return list(output) if isinstance(output, list) else []


def chain_history(turns: Iterable[tuple[bytes, bytes]]) -> History:
    """What `previous_response_id` brings in: each earlier turn's (input items, response object), oldest first,
    as input then output."""
    items: list[dict[str, Any]] = []
    for input_json, body_json in turns:
        items += orjson.loads(input_json)
        items += output_items(orjson.loads(body_json))
    return History(tuple(items), "previous_response_id")


def conversation_history(items: Iterable[bytes]) -> History:
    """What `conversation` brings in: its items in order."""
    return History(tuple(orjson.loads(item) for item in items), "conversation")


def queued(response: dict[str, Any]) -> dict[str, Any]:
    """A background response before it starts."""
    return response | {"status": "queued"}


def cancelled(response: dict[str, Any]) -> dict[str, Any]:
    """A background response a client cancelled, with what it had written."""
    return response | {"status": "cancelled"}


def lost(response: dict[str, Any], message: str) -> dict[str, Any]:
    """A background response whose replica stopped before it ended."""
    return response | {"status": "failed", "error": {"code": "server_error", "message": message}}


def lifecycle_event(kind: str, response: dict[str, Any], sequence: int) -> tuple[str, bytes]:
    """A `response.*` event carrying the whole response (for a stored event stream)."""
    return kind, orjson.dumps({"type": kind, "response": response, "sequence_number": sequence})
