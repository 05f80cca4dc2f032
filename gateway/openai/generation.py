"""Engine deltas -> OpenAI text semantics: stop strings trimmed, usage counted, finish reason decided.

Shared by chat and completions; knows nothing of their chunk shapes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.engine.base import Delta, Engine, FinishReason, GenerationRequest
from gateway.openai.stops import StopMatcher
from gateway.openai.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one generation."""

    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, int]:
        """OpenAI `usage` object."""
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


def sum_usage(usages: list[Usage]) -> Usage:
    """Usage of several generations of one request (completions with a list of prompts)."""
    return Usage(sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages))


class TextStream:
    """One generation as a stream of text pieces; `finish_reason` and `usage` are set once it ends.

    `start()` waits for the first delta, so upstream refusals surface before any HTTP response is sent.
    Leaving early (a stop string matched, or the consumer closed) closes the engine stream, which stops the
    upstream generation.
    """

    def __init__(self, engine: Engine, request: GenerationRequest, counter: TokenCounter) -> None:
        self.request = request
        self._deltas = engine.generate(request)
        self._counter = counter
        self._matcher = StopMatcher(request.stop)
        self._first: Delta | None = None
        self._raw_parts: list[str] = []
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = 0
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        # perf_counter() timestamps for telemetry: engine call, first and last text piece, final delta.
        self.started_at = time.perf_counter()
        self.first_piece_at: float | None = None
        self.last_piece_at: float | None = None
        self.ended_at: float | None = None

    async def start(self) -> None:
        """Fetch the first delta (raises the upstream's error, if any, before streaming starts)."""
        try:
            self._first = await anext(self._deltas)
        except BaseException:
            await self._deltas.aclose()
            raise

    async def close(self) -> None:
        """Abandon the generation (stops the upstream if it is still running)."""
        await self._deltas.aclose()

    async def pieces(self) -> AsyncIterator[str]:
        """Text pieces to send, stop strings removed; empty pieces are skipped."""
        if self._first is None:
            await self.start()
        try:
            delta: Delta | None = self._first
            while delta is not None:
                piece = self._consume(delta)
                if piece:
                    self.last_piece_at = time.perf_counter()
                    if self.first_piece_at is None:
                        self.first_piece_at = self.last_piece_at
                    yield piece
                if self._matcher.matched:
                    self._finish("stop")
                    return
                if delta.finish_reason is not None:
                    tail = self._matcher.flush()
                    if tail:
                        yield tail
                    self._finish(delta.finish_reason)
                    return
                delta = await anext(self._deltas, None)
            raise RuntimeError("engine stream ended without a finish reason")
        finally:
            await self._deltas.aclose()

    async def collect(self) -> str:
        """The whole text (non-streaming requests)."""
        return "".join([piece async for piece in self.pieces()])

    def _consume(self, delta: Delta) -> str:
        self._raw_parts.append(delta.text)
        if delta.prompt_tokens is not None and self._prompt_tokens is None:
            self._prompt_tokens = delta.prompt_tokens
        if delta.completion_tokens is None:
            self._completion_tokens = None  # the engine does not count: count with the tokenizer at the end
        elif self._completion_tokens is not None:
            self._completion_tokens += delta.completion_tokens
        return self._matcher.feed(delta.text)

    def _finish(self, engine_reason: FinishReason) -> None:
        self.ended_at = time.perf_counter()
        prompt_tokens = self._prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = self._counter.count(self.request.prompt)
        completion_tokens = self._completion_tokens
        if completion_tokens is None:
            completion_tokens = self._counter.count("".join(self._raw_parts))
            if engine_reason == "stop" and completion_tokens >= self.request.max_tokens:
                engine_reason = "length"
        self.usage = Usage(prompt_tokens, completion_tokens)
        self.finish_reason = "stop" if self._matcher.matched else engine_reason
