"""Events -> Messages' streamed events and whole `message` bodies.

A message's content is a sequence of blocks (`thinking`, `text`, `tool_use`), one open at a time: the encoder
keeps which one is open and its index, starts a block when an event of another kind arrives, and closes the open
one (a thinking block with its `signature_delta` first) before the next starts and at the end. The finish gives
`message_delta` (stop reason, usage) and `message_stop`. Streamed deltas are a per-block byte prefix plus
`orjson.dumps` of the new text: no dict and no pydantic per token. SSE framing (`event:` lines, pings) is
api/sse.py's.

`stop_reason`: `tool_use` only when a tool_use block was sent (else `end_turn`), `max_tokens` for the length
limit, `stop_sequence` (with the stop string) when one of `stop_sequences` ended the text, else `end_turn`.
Usage: `input_tokens` counts the prompt tokens the engine did not find in its KV cache, `cache_read_input_tokens`
those it did (the engine's reused blocks), as Anthropic's counts split them; nothing is written to a cache on
request, so `cache_creation_input_tokens` is 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, ReasoningEvent, TextEvent, ToolCallEvent
from gateway.core.generation import CollectedChoice, NamedEvent
from gateway.core.usage import Usage
from gateway.errors import GatewayError
from gateway.protocols.messages.ids import tool_use_id
from gateway.protocols.messages.signatures import ThinkingSigner

BLOCK_START = b"content_block_start"
BLOCK_DELTA = b"content_block_delta"
BLOCK_STOP = b"content_block_stop"
MESSAGE_STOP: NamedEvent = (b"message_stop", b'{"type":"message_stop"}')
PING: NamedEvent = (b"ping", b'{"type":"ping"}')
_TEXT, _THINKING, _TOOL_USE = "text", "thinking", "tool_use"
_TEXT_BLOCK = b'{"type":"text","text":""}'
_THINKING_BLOCK = b'{"type":"thinking","thinking":"","signature":""}'
_DELTA_TYPES = {
    _TEXT: b'"delta":{"type":"text_delta","text":',
    _THINKING: b'"delta":{"type":"thinking_delta","thinking":',
    _TOOL_USE: b'"delta":{"type":"input_json_delta","partial_json":',
}


def usage_json(prompt_tokens: int, cached_tokens: int | None, output_tokens: int) -> dict[str, int]:
    """Messages' `usage`: the prompt split into uncached and cache-read tokens."""
    cached = min(cached_tokens or 0, prompt_tokens)
    return {
        "input_tokens": prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output_tokens,
    }


def stop_reason(event: FinishEvent, tool_uses: int) -> str:
    """Messages' stop reason for a choice's finish; `tool_use` only with a tool_use block to answer."""
    if event.reason == "tool_calls":
        return "tool_use" if tool_uses else "end_turn"
    if event.reason == "length":
        return "max_tokens"
    return "stop_sequence" if event.stop_sequence is not None else "end_turn"


class MessagesEncoder:
    """One message's events and body (Messages has one choice per request)."""

    __slots__ = ("_delta_head", "_index", "_message_id", "_model", "_open", "_signer", "_thinking", "_tool_uses")

    def __init__(self, message_id: str, model: str, signer: ThinkingSigner) -> None:
        self._message_id = message_id
        self._model = model
        self._signer = signer
        self._open: str | None = None  # the kind of the open block
        self._index = -1  # the open (or last) block's index
        self._delta_head = b""  # the open block's delta event up to its new value
        self._thinking: list[str] = []  # the open thinking block's text, for its signature
        self._tool_uses = 0

    def opening(self, choices: Sequence[Choice]) -> list[NamedEvent]:
        """`message_start`, with the input usage known so far."""
        choice = choices[0]
        message = self._head() | {
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(choice.prompt_tokens(), choice.cached_tokens, 0),
        }
        return [(b"message_start", orjson.dumps({"type": "message_start", "message": message}))]

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[NamedEvent]:
        """The block events of one batch of the choice's events (and the message's end after its finish)."""
        out: list[NamedEvent] = []
        for event in events:
            if isinstance(event, TextEvent):
                if event.text:
                    if self._open != _TEXT:
                        self._start(out, _TEXT, _TEXT_BLOCK)
                    out.append((BLOCK_DELTA, self._delta_head + orjson.dumps(event.text) + b"}}"))
            elif isinstance(event, ReasoningEvent):
                if event.text:
                    if self._open != _THINKING:
                        self._start(out, _THINKING, _THINKING_BLOCK)
                    self._thinking.append(event.text)
                    out.append((BLOCK_DELTA, self._delta_head + orjson.dumps(event.text) + b"}}"))
            elif isinstance(event, ToolCallEvent):
                self._tool_call(out, event)
            else:
                self._finish(out, event)
        return out

    def closing(self, run: ChoiceRun) -> list[NamedEvent]:
        """Nothing: the finish ended the message."""
        return []

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The body of a non-streamed message: thinking, text, then tool_use blocks."""
        out = collected[run.choices[0].index]
        content: list[dict[str, Any]] = []
        thinking = "".join(out.reasoning)
        if thinking:
            content.append({"type": "thinking", "thinking": thinking, "signature": self._signer.sign(thinking)})
        text = "".join(out.text)
        if text:
            content.append({"type": "text", "text": text})
        for _, call in sorted(out.calls.items()):
            content.append(
                {"type": "tool_use", "id": tool_use_id(call["id"]), "name": call["name"], "input": _input(call)}
            )
        finish = out.finish
        assert finish is not None  # collect() ran the choice to its end
        usage = finish.usage
        return self._head() | {
            "content": content,
            "stop_reason": stop_reason(finish, len(out.calls)),
            "stop_sequence": finish.stop_sequence,
            "usage": usage_json(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens),
        }

    def failure(self, error: GatewayError, body: bytes) -> list[NamedEvent]:
        """An `error` event with the error body."""
        return [(b"error", body)]

    def _head(self) -> dict[str, Any]:
        return {"id": self._message_id, "type": "message", "role": "assistant", "model": self._model}

    def _start(self, out: list[NamedEvent], kind: str, block: bytes) -> None:
        if self._open is not None:
            self._close(out)
        self._open = kind
        self._index += 1
        index = str(self._index).encode()
        start = b'{"type":"content_block_start","index":' + index + b',"content_block":' + block + b"}"
        out.append((BLOCK_START, start))
        self._delta_head = b'{"type":"content_block_delta","index":' + index + b"," + _DELTA_TYPES[kind]

    def _close(self, out: list[NamedEvent]) -> None:
        index = str(self._index).encode()
        if self._open == _THINKING:
            signature = self._signer.sign("".join(self._thinking))
            self._thinking = []
            delta = b'"delta":{"type":"signature_delta","signature":' + orjson.dumps(signature) + b"}}"
            out.append((BLOCK_DELTA, b'{"type":"content_block_delta","index":' + index + b"," + delta))
        out.append((BLOCK_STOP, b'{"type":"content_block_stop","index":' + index + b"}"))
        self._open = None

    def _tool_call(self, out: list[NamedEvent], event: ToolCallEvent) -> None:
        if event.name is not None:  # a call's first piece
            self._tool_uses += 1
            block = {"type": "tool_use", "id": tool_use_id(event.id), "name": event.name, "input": {}}
            self._start(out, _TOOL_USE, orjson.dumps(block))
        if event.arguments:
            out.append((BLOCK_DELTA, self._delta_head + orjson.dumps(event.arguments) + b"}}"))

    def _finish(self, out: list[NamedEvent], event: FinishEvent) -> None:
        if self._open is not None:
            self._close(out)
        delta = {"stop_reason": stop_reason(event, self._tool_uses), "stop_sequence": event.stop_sequence}
        usage: Usage = event.usage
        body = {
            "type": "message_delta",
            "delta": delta,
            "usage": usage_json(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens),
        }
        out.append((b"message_delta", orjson.dumps(body)))
        out.append(MESSAGE_STOP)


def _input(call: dict[str, Any]) -> dict[str, Any]:
    """A collected call's arguments as an object ({} for arguments a length limit cut short)."""
    try:
        value = json.loads("".join(call["arguments"]) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
