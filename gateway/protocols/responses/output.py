"""A response's output items while they are written: reasoning, a message, a function call.

Each item keeps what was said into it and writes its own objects: the item as `output_item.added` shows it, its
events when it closes (`output_text.done`, `content_part.done`, `output_item.done` ...), and the whole item for the
`response` object. Per streamed token only the constant prefix of its delta event is used (built once per item),
with the new text and the sequence number: no dict and no pydantic per token.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.core.events import TokenLogprob
from gateway.protocols.openai_shared import FLOOR_LOGPROB, floored_logprob, token_logprob

TEXT_DELTA = b"response.output_text.delta"
REASONING_DELTA = b"response.reasoning_text.delta"
ARGUMENTS_DELTA = b"response.function_call_arguments.delta"

Event = tuple[str, dict[str, Any]]  # (type, the event's fields but type and sequence number)


def new_id(prefix: str) -> str:
    """An object id as the API writes them: `resp_...`, `msg_...`, `fc_...`, `rs_...`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def delta_prefix(kind: bytes, item_id: str, output_index: int, extra: bytes = b"") -> bytes:
    """The constant start of an item's delta events, up to the value of `delta`."""
    head = b'{"type":"' + kind + b'","item_id":' + orjson.dumps(item_id) + b',"output_index":%d' % output_index
    return head + extra + b',"delta":'


def stream_logprob(item: TokenLogprob) -> dict[str, Any]:
    """A token's log-probability as delta events carry it."""
    return {
        "token": item.token,
        "logprob": floored_logprob(item.logprob) if item.logprob is not None else FLOOR_LOGPROB,
        "top_logprobs": [{"token": top.token, "logprob": floored_logprob(top.logprob)} for top in item.top],
    }


class MessageOutput:
    """An assistant message with one `output_text` part."""

    __slots__ = ("delta_prefix", "id", "index", "logprobs", "texts")
    kind = "message"

    def __init__(self, index: int, logprobs: bool) -> None:
        self.id = new_id("msg")
        self.index = index
        self.texts: list[str] = []
        self.logprobs: list[TokenLogprob] | None = [] if logprobs else None
        # Without logprobs every delta carries `"logprobs":[]`, so it belongs to the constant prefix.
        extra = b',"content_index":0' + (b"" if logprobs else b',"logprobs":[]')
        self.delta_prefix = delta_prefix(TEXT_DELTA, self.id, index, extra)

    def opened(self) -> list[Event]:
        """`output_item.added` and `content_part.added`."""
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            ("response.output_item.added", {"output_index": self.index, "item": self.item("in_progress", empty=True)}),
            ("response.content_part.added", self._where() | {"part": part}),
        ]

    def closed(self, status: str) -> list[Event]:
        """`output_text.done`, `content_part.done` and `output_item.done`."""
        item = self.item(status)
        logprobs = [stream_logprob(lp) for lp in self.logprobs] if self.logprobs else []
        return [
            ("response.output_text.done", self._where() | {"text": item["content"][0]["text"], "logprobs": logprobs}),
            ("response.content_part.done", self._where() | {"part": item["content"][0]}),
            ("response.output_item.done", {"output_index": self.index, "item": item}),
        ]

    def item(self, status: str, empty: bool = False) -> dict[str, Any]:
        """The message as the `response` object shows it."""
        content = [] if empty else [self.part()]
        return {"id": self.id, "type": "message", "status": status, "content": content, "role": "assistant"}

    def part(self) -> dict[str, Any]:
        """Its `output_text` part."""
        logprobs = [token_logprob(lp) for lp in self.logprobs] if self.logprobs else []
        return {"type": "output_text", "text": "".join(self.texts), "annotations": [], "logprobs": logprobs}

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.index, "content_index": 0}


class ReasoningOutput:
    """A reasoning item with one `reasoning_text` part (and, when asked, the reasoning sealed)."""

    __slots__ = ("delta_prefix", "id", "index", "sealed", "texts")
    kind = "reasoning"

    def __init__(self, index: int) -> None:
        self.id = new_id("rs")
        self.index = index
        self.texts: list[str] = []
        self.sealed: str | None = None  # encrypted_content, set when the item closes if `include` asks for it
        self.delta_prefix = delta_prefix(REASONING_DELTA, self.id, index, b',"content_index":0')

    @property
    def text(self) -> str:
        """The reasoning so far."""
        return "".join(self.texts)

    def opened(self) -> list[Event]:
        """`output_item.added` and `content_part.added`."""
        return [
            ("response.output_item.added", {"output_index": self.index, "item": self.item("in_progress", empty=True)}),
            ("response.content_part.added", self._where() | {"part": {"type": "reasoning_text", "text": ""}}),
        ]

    def closed(self, status: str) -> list[Event]:
        """`reasoning_text.done`, `content_part.done` and `output_item.done`."""
        item = self.item(status)
        part = item["content"][0]
        return [
            ("response.reasoning_text.done", self._where() | {"text": part["text"]}),
            ("response.content_part.done", self._where() | {"part": part}),
            ("response.output_item.done", {"output_index": self.index, "item": item}),
        ]

    def item(self, status: str, empty: bool = False) -> dict[str, Any]:
        """The reasoning item as the `response` object shows it."""
        content = [] if empty else [{"type": "reasoning_text", "text": self.text}]
        item: dict[str, Any] = {"id": self.id, "type": "reasoning", "summary": [], "content": content}
        if self.sealed is not None and not empty:
            item["encrypted_content"] = self.sealed
        item["status"] = status
        return item

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.index, "content_index": 0}


class CallOutput:
    """A function call: its call id and name from its first piece, then its arguments."""

    __slots__ = ("arguments", "call_id", "delta_prefix", "id", "index", "name")
    kind = "function_call"

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.id = new_id("fc")
        self.index = index
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []
        self.delta_prefix = delta_prefix(ARGUMENTS_DELTA, self.id, index)

    def opened(self) -> list[Event]:
        """`output_item.added`."""
        return [("response.output_item.added", {"output_index": self.index, "item": self.item("in_progress", True)})]

    def closed(self, status: str) -> list[Event]:
        """`function_call_arguments.done` and `output_item.done`."""
        item = self.item(status)
        where = {"item_id": self.id, "output_index": self.index}
        return [
            ("response.function_call_arguments.done", where | {"name": self.name, "arguments": item["arguments"]}),
            ("response.output_item.done", {"output_index": self.index, "item": item}),
        ]

    def item(self, status: str, empty: bool = False) -> dict[str, Any]:
        """The call as the `response` object shows it."""
        arguments = "" if empty else "".join(self.arguments)
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": self.call_id,
            "name": self.name,
        }


OutputItem = MessageOutput | ReasoningOutput | CallOutput
