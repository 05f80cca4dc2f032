"""Events -> OpenAI JSON, one encoder per endpoint: streamed chunks as bytes, and whole response bodies.

Streamed chunks are built from byte prefixes precomputed per choice plus `orjson.dumps` of the new values: no
pydantic and no dict per token. What is framing (`data:`, `[DONE]`) is api/sse.py's business, not this one's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import (
    ChoiceEvent,
    FinishEvent,
    ReasoningEvent,
    TextEvent,
    TokenLogprob,
    ToolCallEvent,
)
from gateway.core.served_model import ResponseMeta

# OpenAI reports tokens the sampler could never pick (masked to -inf) as -9999.0; JSON has no -Infinity.
FLOOR_LOGPROB = -9999.0


def _logprob(value: float | None) -> float | None:
    if value is None:
        return None
    return value if value > FLOOR_LOGPROB else FLOOR_LOGPROB


class CollectedChoice:
    """Everything one choice produced, for a non-streamed body."""

    __slots__ = ("calls", "finish", "logprobs", "reasoning", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[TokenLogprob] = []
        self.finish: FinishEvent | None = None

    def add(self, event: ChoiceEvent) -> None:
        if isinstance(event, TextEvent):
            self.text.append(event.text)
            if event.logprobs:
                self.logprobs.extend(event.logprobs)
        elif isinstance(event, ReasoningEvent):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallEvent):
            call = self.calls.setdefault(event.call_index, {"id": event.id, "name": event.name, "arguments": []})
            call["arguments"].append(event.arguments)
        else:
            self.finish = event


async def collect(run: ChoiceRun) -> dict[int, CollectedChoice]:
    """Run every choice to its end; what each produced, by choice index."""
    collected = {choice.index: CollectedChoice() for choice in run.choices}
    async with contextlib.aclosing(run.events()) as batches:  # a cancel closes the generations at once
        async for choice, events in batches:
            target = collected[choice.index]
            for event in events:
                target.add(event)
    return collected


# ---- chat -----------------------------------------------------------------------------------------------------


# Token text -> its JSON around the value. A token's bytes follow from its text (its UTF-8, or the `bytes:\x..`
# spelling of a partial character), so the text alone is the key.
_TOKEN_JSON: dict[str, tuple[bytes, bytes]] = {}
_TOKEN_JSON_LIMIT = 1 << 16


def chat_logprobs_json(items: list[TokenLogprob]) -> bytes:
    """`{"content": [...], "refusal": null}` for streamed chunks: each token's JSON around its value is built once
    per distinct token and reused (this runs per token when logprobs are asked for)."""
    parts = []
    for item in items:
        if item.top or item.logprob is None:
            parts.append(orjson.dumps(chat_token_logprob(item)))
            continue
        around = _TOKEN_JSON.get(item.token)
        if around is None:
            if len(_TOKEN_JSON) >= _TOKEN_JSON_LIMIT:
                _TOKEN_JSON.clear()
            head = b'{"token":' + orjson.dumps(item.token) + b',"logprob":'
            tail = b',"bytes":' + orjson.dumps(list(item.token_bytes)) + b',"top_logprobs":[]}'
            around = _TOKEN_JSON[item.token] = (head, tail)
        parts.append(around[0] + orjson.dumps(max(item.logprob, FLOOR_LOGPROB)) + around[1])
    content = parts[0] if len(parts) == 1 else b",".join(parts)
    return b'{"content":[' + content + b'],"refusal":null}'


def chat_token_logprob(item: TokenLogprob) -> dict[str, Any]:
    """ChatCompletionTokenLogprob."""
    return {
        "token": item.token,
        "logprob": _logprob(item.logprob) if item.logprob is not None else FLOOR_LOGPROB,
        "bytes": list(item.token_bytes),
        "top_logprobs": [
            {"token": top.token, "logprob": _logprob(top.logprob), "bytes": list(top.token_bytes)} for top in item.top
        ],
    }


class _ChunkEncoder:
    """What both endpoints' encoders share: per-choice chunk prefixes and the usage chunk."""

    def __init__(self, meta: ResponseMeta, chunk_object: str, include_usage: bool) -> None:
        self._meta = meta
        self._chunk_object = chunk_object
        self._head = orjson.dumps(meta.head(chunk_object))[:-1] + b',"choices":['
        self._usage_null = b',"usage":null}' if include_usage else b"}"
        self._include_usage = include_usage
        self._prefixes: dict[int, bytes] = {}

    def closing(self, run: ChoiceRun) -> list[bytes]:
        """The usage chunk, when asked for."""
        if not self._include_usage:
            return []
        head = orjson.dumps(self._meta.head(self._chunk_object))[:-1]
        return [head + b',"choices":[],"usage":' + orjson.dumps(run.usage().to_dict()) + b"}"]

    def _prefix(self, index: int) -> bytes:
        prefix = self._prefixes.get(index)
        if prefix is None:
            prefix = self._prefixes[index] = self._head + b'{"index":' + str(index).encode() + b","
        return prefix


class ChatEncoder(_ChunkEncoder):
    """chat.completion and chat.completion.chunk objects."""

    def __init__(self, meta: ResponseMeta, include_usage: bool) -> None:
        super().__init__(meta, "chat.completion.chunk", include_usage)
        self._calls_seen: dict[int, set[int]] = {}

    def opening(self, choices: Sequence[Choice]) -> list[bytes]:
        """The first chunk of every choice: the assistant role."""
        return [
            self._prefix(c.index) + b'"delta":{"role":"assistant","content":"","refusal":null},'
            b'"logprobs":null,"finish_reason":null}]' + self._usage_null
            for c in choices
        ]

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[bytes]:
        """The chunks of one choice's events."""
        prefix = self._prefix(choice.index)
        out = []
        for event in events:
            if isinstance(event, TextEvent):
                logprobs = b"null" if event.logprobs is None else chat_logprobs_json(event.logprobs)
                delta = b'"delta":{"content":' + orjson.dumps(event.text) + b"},"
                out.append(prefix + delta + b'"logprobs":' + logprobs + b',"finish_reason":null}]' + self._usage_null)
            elif isinstance(event, FinishEvent):
                reason = orjson.dumps(event.reason)
                out.append(prefix + b'"delta":{},"logprobs":null,"finish_reason":' + reason + b"}]" + self._usage_null)
            else:
                delta = orjson.dumps(self._delta(choice.index, event))
                out.append(prefix + b'"delta":' + delta + b',"logprobs":null,"finish_reason":null}]' + self._usage_null)
        return out

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The body of a non-streamed chat completion."""
        choices = []
        for choice in run.choices:
            out = collected[choice.index]
            text = "".join(out.text)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text if text or not out.calls else None,
                "refusal": None,
                "annotations": [],
            }
            if out.reasoning:
                message["reasoning_content"] = "".join(out.reasoning)
            if out.calls:
                message["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
                    }
                    for _, call in sorted(out.calls.items())
                ]
            logprobs = None
            if choice.request.logprobs:
                logprobs = {"content": [chat_token_logprob(item) for item in out.logprobs], "refusal": None}
            choices.append(
                {"index": choice.index, "message": message, "logprobs": logprobs, "finish_reason": choice.finish_reason}
            )
        return self._meta.head("chat.completion") | {
            "choices": choices,
            "usage": run.usage().to_dict(),
            "service_tier": "default",
        }

    def _delta(self, index: int, event: ReasoningEvent | ToolCallEvent) -> dict[str, Any]:
        if isinstance(event, ReasoningEvent):
            return {"reasoning_content": event.text}
        seen = self._calls_seen.setdefault(index, set())
        call: dict[str, Any] = {"index": event.call_index}
        if event.call_index not in seen:
            seen.add(event.call_index)
            call |= {"id": event.id, "type": "function", "function": {"name": event.name, "arguments": event.arguments}}
        else:
            call["function"] = {"arguments": event.arguments}
        return {"tool_calls": [call]}


# ---- completions ----------------------------------------------------------------------------------------------


class CompletionEncoder(_ChunkEncoder):
    """text_completion objects, streamed or whole; `echo` puts each choice's prompt first."""

    def __init__(self, meta: ResponseMeta, include_usage: bool, echo: bool) -> None:
        super().__init__(meta, "text_completion", include_usage)
        self._echo = echo
        self._offsets: dict[int, int] = {}  # characters sent so far per choice (logprobs' text_offset)

    def opening(self, choices: Sequence[Choice]) -> list[bytes]:
        """Completions have no opening chunk."""
        return []

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[bytes]:
        """The chunks of one choice's events (its echoed prompt first, once)."""
        prefix = self._prefix(choice.index)
        out = []
        if self._echo and choice.index not in self._offsets:
            out.append(self._text_chunk(prefix, choice, choice.request.prompt, choice.prompt_logprobs))
        for event in events:
            if isinstance(event, TextEvent):
                out.append(self._text_chunk(prefix, choice, event.text, event.logprobs))
            elif isinstance(event, FinishEvent):
                reason = orjson.dumps(event.reason)
                out.append(prefix + b'"text":"","logprobs":null,"finish_reason":' + reason + b"}]" + self._usage_null)
        return out

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The body of a non-streamed completion."""
        choices = []
        for choice in run.choices:
            out = collected[choice.index]
            text = "".join(out.text)
            logprobs = None
            if choice.request.logprobs:
                items = list(out.logprobs)
                if self._echo:
                    items = list(choice.prompt_logprobs or []) + items
                logprobs = self._logprobs(items, 0)
            if self._echo:
                text = choice.request.prompt + text
            choices.append(
                {"index": choice.index, "text": text, "logprobs": logprobs, "finish_reason": choice.finish_reason}
            )
        return self._meta.head("text_completion") | {"choices": choices, "usage": run.usage().to_dict()}

    def _text_chunk(self, prefix: bytes, choice: Choice, text: str, items: list[TokenLogprob] | None) -> bytes:
        offset = self._offsets.get(choice.index, 0)
        self._offsets[choice.index] = offset + len(text)
        logprobs = b"null"
        if choice.request.logprobs:
            logprobs = orjson.dumps(self._logprobs(items or [], offset))
        return (
            prefix
            + b'"text":'
            + orjson.dumps(text)
            + b',"logprobs":'
            + logprobs
            + b',"finish_reason":null}]'
            + self._usage_null
        )

    def _logprobs(self, items: list[TokenLogprob], offset: int) -> dict[str, Any]:
        """The legacy completions logprobs object; text_offset counts characters from `offset`. Each position's
        top_logprobs holds the chosen token and the alternatives asked for (the chosen one always, as OpenAI)."""
        offsets = []
        tops: list[dict[str, float | None]] = []
        for item in items:
            offsets.append(offset)
            offset += len(item.token) if not item.token.startswith("bytes:") else 0
            top: dict[str, float | None] = {alt.token: _logprob(alt.logprob) for alt in item.top}
            if item.logprob is not None:
                top.setdefault(item.token, _logprob(item.logprob))
            tops.append(top)
        return {
            "tokens": [item.token for item in items],
            "token_logprobs": [_logprob(item.logprob) for item in items],
            "top_logprobs": tops,
            "text_offset": offsets,
        }
