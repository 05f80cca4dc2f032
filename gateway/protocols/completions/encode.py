"""Events -> text_completion objects, streamed (chunks as bytes) or whole; `echo` puts each choice's prompt first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, TextEvent, TokenLogprob
from gateway.core.generation import CollectedChoice
from gateway.protocols.openai_shared import ChunkEncoder, ResponseMeta, floored_logprob, usage_json


class CompletionEncoder(ChunkEncoder):
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
        prefix = self.prefix(choice.index)
        out = []
        if self._echo and choice.index not in self._offsets:
            out.append(self._text_chunk(prefix, choice, choice.request.prompt, choice.prompt_logprobs))
        for event in events:
            if isinstance(event, TextEvent):
                out.append(self._text_chunk(prefix, choice, event.text, event.logprobs))
            elif isinstance(event, FinishEvent):
                reason = orjson.dumps(event.reason)
                out.append(prefix + b'"text":"","logprobs":null,"finish_reason":' + reason + b"}]" + self.usage_null)
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
        return self.meta.head("text_completion") | {"choices": choices, "usage": usage_json(run.usage())}

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
            + self.usage_null
        )

    def _logprobs(self, items: list[TokenLogprob], offset: int) -> dict[str, Any]:
        """The legacy completions logprobs object; text_offset counts characters from `offset`. Each position's
        top_logprobs holds the chosen token and the alternatives asked for (the chosen one always, as OpenAI)."""
        offsets = []
        tops: list[dict[str, float | None]] = []
        for item in items:
            offsets.append(offset)
            offset += len(item.token) if not item.token.startswith("bytes:") else 0
            top: dict[str, float | None] = {alt.token: floored_logprob(alt.logprob) for alt in item.top}
            if item.logprob is not None:
                top.setdefault(item.token, floored_logprob(item.logprob))
            tops.append(top)
        return {
            "tokens": [item.token for item in items],
            "token_logprobs": [floored_logprob(item.logprob) for item in items],
            "top_logprobs": tops,
            "text_offset": offsets,
        }
