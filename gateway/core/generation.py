"""A planned request running: its choices, the protocol's encoder, and the drivers that stream or collect them.

The core produces typed events (core/events.py) per choice; a protocol's encoder turns them into its wire
objects: streamed events (each one JSON, or an event name and JSON, as the protocol's stream style says), and the
body of a non-streamed response. Framing those events into SSE bytes is api/sse.py's job, not the encoder's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, ReasoningEvent, TextEvent, TokenLogprob, ToolCallEvent
from gateway.errors import GatewayError

NamedEvent = tuple[bytes, bytes]  # (event name, JSON data)


class Encoder(Protocol):
    """What a protocol's encoder offers the drivers below and the SSE framer."""

    def opening(self, choices: Sequence[Choice]) -> list[Any]:
        """Events before any output."""
        ...

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[Any]:
        """Events for one choice's events."""
        ...

    def closing(self, run: ChoiceRun) -> list[Any]:
        """Events after every choice ended."""
        ...

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The whole body of a non-streamed response."""
        ...

    def failure(self, error: GatewayError, body: bytes) -> list[NamedEvent]:
        """The named events that report a failure after the stream started (`body`: the error as the route
        renders it)."""
        ...


@dataclass
class Generation:
    """A request ready to run: its choices and how to encode them. `before_end`, when set, is awaited once with
    what ends the response (a stream's closing events, or the whole body) before the client gets it: what must
    happen first (a store saving the response) runs there, and nothing of it per token."""

    run: ChoiceRun
    encoder: Encoder
    stream: bool
    before_end: Callable[[Any], Awaitable[None]] | None = None


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
        """Keep one event's output."""
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


async def stream_chunks(generation: Generation) -> AsyncGenerator[list[Any], None]:
    """The events of a streamed response, a list per write. Nothing is produced before the first output (or the
    first failure) arrives, so a refusal can still get its own status code."""
    run, encoder = generation.run, generation.encoder
    batches = run.events()
    try:
        first = await anext(batches, None)
        opening = encoder.opening(run.choices)
        yield opening + encoder.chunks(*first) if first is not None else opening
        async for choice, events in batches:
            yield encoder.chunks(choice, events)
        closing = encoder.closing(run)
        if generation.before_end is not None:
            await generation.before_end(closing)
        if closing:
            yield closing
    finally:
        await batches.aclose()


async def respond(generation: Generation) -> dict[str, Any]:
    """The body of a non-streamed response (every choice run to its end)."""
    collected = await collect(generation.run)
    body = generation.encoder.response(generation.run, collected)
    if generation.before_end is not None:
        await generation.before_end(body)
    return body
