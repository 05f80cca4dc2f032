"""The choices of one request: engine deltas in, each choice's events out, merged in arrival order.

A request becomes one or more upstream generations (`UpstreamPlan`): one per prompt, or per choice when the
upstream cannot return several sequences in one call. Each generation feeds the choices it serves, told apart
by the delta's `sequence_index`. `ChoiceRun` starts them all, merges their events as they come (without extra
tasks when there is only one generation, the common case), stops a generation once all its choices have
ended (a stop string matched), and closes every one of them when the consumer leaves, which stops the
upstream work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass

from gateway.core.events import ChoiceEvent, FinishEvent, OutputEvent, TextEvent, TokenLogprob
from gateway.core.processors import Processor, finish_chain, run_chain
from gateway.core.tokens import TokenCounter
from gateway.core.usage import Usage, request_usage
from gateway.engine.base import Delta, Engine, FinishReason, GenerationRequest


class Choice:
    """One choice: its processor chain, its token counts, its finish; timestamps for telemetry."""

    def __init__(
        self, index: int, prompt_index: int, request: GenerationRequest, counter: TokenCounter, chain: list[Processor]
    ) -> None:
        self.index = index
        self.prompt_index = prompt_index
        self.request = request
        self._counter = counter
        self._chain = chain
        self._raw_parts: list[str] = []
        self._prompt_tokens: int | None = None
        self._counted_prompt_tokens: int | None = None
        self._cached_tokens: int | None = None
        self._completion_tokens: int | None = 0
        self.prompt_logprobs: list[TokenLogprob] | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        # perf_counter() timestamps: generation started, first and last output, finish.
        self.started_at = time.perf_counter()
        self.first_piece_at: float | None = None
        self.last_piece_at: float | None = None
        self.ended_at: float | None = None

    @property
    def done(self) -> bool:
        """Whether the choice has finished."""
        return self.finish_reason is not None

    @property
    def cached_tokens(self) -> int | None:
        """The prompt tokens the engine reported found in its KV cache so far (None: not reported yet)."""
        return self._cached_tokens

    def prompt_tokens(self) -> int:
        """The prompt's token count: the engine's, else the tokenizer's (counted once, however often asked)."""
        if self._prompt_tokens is not None:
            return self._prompt_tokens
        if self._counted_prompt_tokens is None:
            self._counted_prompt_tokens = self._counter.count(self.request.prompt)
        return self._counted_prompt_tokens

    def on_delta(self, delta: Delta) -> list[ChoiceEvent]:
        """The events of one delta of this choice's sequence; the last one is a FinishEvent when it ends."""
        self._raw_parts.append(delta.text)
        if delta.prompt_tokens is not None and self._prompt_tokens is None:
            self._prompt_tokens = delta.prompt_tokens
        if delta.cached_tokens is not None:
            self._cached_tokens = delta.cached_tokens
        if delta.completion_tokens is None:
            self._completion_tokens = None  # the engine does not count: count with the tokenizer at the end
        elif self._completion_tokens is not None:
            self._completion_tokens += delta.completion_tokens
        if delta.prompt_logprobs is not None and self.prompt_logprobs is None:
            self.prompt_logprobs = delta.prompt_logprobs
        events: list[OutputEvent] = [TextEvent(delta.text, delta.logprobs)] if delta.text or delta.logprobs else []
        ended = False
        if self._chain:
            events = run_chain(self._chain, events)
            ended = any(processor.ended for processor in self._chain)
        if events:
            self.last_piece_at = time.perf_counter()
            if self.first_piece_at is None:
                self.first_piece_at = self.last_piece_at
        if ended:
            stop = next((found for p in self._chain if (found := getattr(p, "matched_stop", None))), None)
            return [*events, self._finish("stop", ended_early=True, stop=stop)]
        if delta.finish_reason is not None:
            if self._chain:
                events += finish_chain(self._chain)
            return [*events, self._finish(delta.finish_reason, ended_early=False)]
        return events  # type: ignore[return-value]  # OutputEvents are ChoiceEvents

    def spent(self) -> Usage | None:
        """What the choice has used so far: its usage once finished; before that its prompt and the tokens
        generated so far; None while no output has arrived (the engine returned nothing for it)."""
        if self.usage is not None:
            return self.usage
        if not self._raw_parts:
            return None
        prompt = self._prompt_tokens if self._prompt_tokens is not None else self._counter.count(self.request.prompt)
        completion = self._completion_tokens
        if completion is None:
            completion = self._counter.count("".join(self._raw_parts))
        return Usage(prompt, completion, self._cached_tokens)

    def _finish(self, engine_reason: FinishReason, ended_early: bool, stop: str | None = None) -> FinishEvent:
        self.ended_at = time.perf_counter()
        prompt_tokens = self.prompt_tokens()
        completion_tokens = self._completion_tokens
        reason: str = engine_reason
        if completion_tokens is None:
            completion_tokens = self._counter.count("".join(self._raw_parts))
            if not ended_early and reason == "stop" and completion_tokens >= self.request.max_tokens:
                reason = "length"
        if reason == "stop" and any(getattr(p, "has_tool_calls", False) for p in self._chain):
            reason = "tool_calls"
        cached = None if self._cached_tokens is None else min(self._cached_tokens, prompt_tokens)
        self.usage = Usage(prompt_tokens, completion_tokens, cached)
        self.finish_reason = reason
        return FinishEvent(reason, self.usage, stop)


def spent_usage(choices: Iterable[Choice]) -> Usage:
    """What a request's choices used, finished or not (each prompt once): what its limits are charged."""
    return request_usage([(c.prompt_index, usage) for c in choices if (usage := c.spent()) is not None])


@dataclass(frozen=True)
class UpstreamPlan:
    """One upstream generation and the choices it serves (`choices[i]` is its sequence i)."""

    request: GenerationRequest
    choices: list[Choice]


ChoiceBatch = tuple[Choice, list[ChoiceEvent]]


class ChoiceRun:
    """Runs the upstream generations of one request and merges their choices' events."""

    def __init__(self, engine: Engine, plans: list[UpstreamPlan]) -> None:
        self.plans = plans
        self.choices = sorted((c for plan in plans for c in plan.choices), key=lambda c: c.index)
        self._streams = [engine.generate(plan.request) for plan in plans]

    def usage(self) -> Usage:
        """The request's usage: every prompt once, every choice's completion."""
        return request_usage([(c.prompt_index, c.usage) for c in self.choices if c.usage is not None])

    def events(self) -> AsyncGenerator[ChoiceBatch, None]:
        """(choice, events) as they come, until every choice has finished; closing it early abandons every
        generation still running (which stops its upstream work). One generation is read directly: no layer
        in between on the per-token path."""
        return self._read(0) if len(self._streams) == 1 else self._merged()

    async def _read(self, which: int) -> AsyncGenerator[ChoiceBatch, None]:
        plan, stream = self.plans[which], self._streams[which]
        choices = plan.choices
        try:
            async for delta in stream:
                choice = choices[delta.sequence_index] if delta.sequence_index < len(choices) else None
                if choice is None or choice.done:
                    continue  # a sequence nobody asked for, or one whose stop string already matched
                events = choice.on_delta(delta)
                if events:
                    yield choice, events
                if choice.done and all(c.done for c in choices):
                    return
            if not all(c.done for c in choices):
                raise RuntimeError("engine stream ended without finishing every choice")
        finally:
            await stream.aclose()

    async def _merged(self) -> AsyncGenerator[ChoiceBatch, None]:
        queue: asyncio.Queue[ChoiceBatch | BaseException | None] = asyncio.Queue()

        async def pump(which: int) -> None:
            try:
                async for batch in self._read(which):
                    queue.put_nowait(batch)
                queue.put_nowait(None)
            except Exception as exc:
                queue.put_nowait(exc)

        tasks = [asyncio.create_task(pump(which)) for which in range(len(self._streams))]
        try:
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            for stream in self._streams:  # those whose reader never started
                await stream.aclose()
