"""Events -> chat.completion and chat.completion.chunk objects: streamed chunks as bytes, and whole bodies.

Streamed chunks are built from byte prefixes precomputed per choice plus `orjson.dumps` of the new values: no
pydantic and no dict per token. What is framing (`data:`, `[DONE]`) is api/sse.py's business, not this one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, ReasoningEvent, TextEvent, TokenLogprob, ToolCallEvent
from gateway.core.generation import CollectedChoice
from gateway.protocols.openai_shared import FLOOR_LOGPROB, ChunkEncoder, ResponseMeta, token_logprob, usage_json

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
            parts.append(orjson.dumps(token_logprob(item)))
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


class ChatEncoder(ChunkEncoder):
    """chat.completion and chat.completion.chunk objects."""

    def __init__(self, meta: ResponseMeta, include_usage: bool) -> None:
        super().__init__(meta, "chat.completion.chunk", include_usage)
        self._calls_seen: dict[int, set[int]] = {}

    def opening(self, choices: Sequence[Choice]) -> list[bytes]:
        """The first chunk of every choice: the assistant role."""
        return [
            self.prefix(c.index) + b'"delta":{"role":"assistant","content":"","refusal":null},'
            b'"logprobs":null,"finish_reason":null}]' + self.usage_null
            for c in choices
        ]

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[bytes]:
        """The chunks of one choice's events."""
        prefix = self.prefix(choice.index)
        out = []
        for event in events:
            if isinstance(event, TextEvent):
                logprobs = b"null" if event.logprobs is None else chat_logprobs_json(event.logprobs)
                delta = b'"delta":{"content":' + orjson.dumps(event.text) + b"},"
                out.append(prefix + delta + b'"logprobs":' + logprobs + b',"finish_reason":null}]' + self.usage_null)
            elif isinstance(event, FinishEvent):
                reason = orjson.dumps(event.reason)
                out.append(prefix + b'"delta":{},"logprobs":null,"finish_reason":' + reason + b"}]" + self.usage_null)
            else:
                delta = orjson.dumps(self._delta(choice.index, event))
                out.append(prefix + b'"delta":' + delta + b',"logprobs":null,"finish_reason":null}]' + self.usage_null)
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
                logprobs = {"content": [token_logprob(item) for item in out.logprobs], "refusal": None}
            choices.append(
                {"index": choice.index, "message": message, "logprobs": logprobs, "finish_reason": choice.finish_reason}
            )
        return self.meta.head("chat.completion") | {
            "choices": choices,
            "usage": usage_json(run.usage()),
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
