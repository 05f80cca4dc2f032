"""Parsers in a row: each later stage sees only the content (`TextEvent`) of the stage before it.

    chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes"))

reasoning first, so that a call written inside the reasoning stays reasoning, and JSON meant as the answer is
not trapped in `reasoning_content`.
"""

from __future__ import annotations

from typing import Protocol

from gateway.openai.events import OutputEvent, TextEvent


class StreamParser(Protocol):
    """What a stage is: text in, events out, and a last call at the end of the generation."""

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of text."""
        ...

    def finish(self) -> list[OutputEvent]:
        """The end of the generation."""
        ...


class Chain:
    """Stages composed in order; `has_tool_calls` is true if any stage emitted a call."""

    __slots__ = ("_stages",)

    def __init__(self, *stages: StreamParser) -> None:
        if not stages:
            raise ValueError("a chain needs at least one stage")
        self._stages = stages

    @property
    def has_tool_calls(self) -> bool:
        """Whether any stage emitted a tool call."""
        return any(getattr(stage, "has_tool_calls", False) for stage in self._stages)

    @property
    def markers(self) -> tuple[str, ...]:
        """The markup every stage reads."""
        return tuple(marker for stage in self._stages for marker in getattr(stage, "markers", ()))

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text through all stages."""
        events = self._stages[0].feed(text)
        for stage in self._stages[1:]:
            if len(events) == 1 and type(events[0]) is TextEvent:  # the usual case: one piece of content
                events = stage.feed(events[0].text)
            else:
                events = _through(stage, events)
        return events

    def finish(self) -> list[OutputEvent]:
        """End each stage in turn, passing what it releases through the stages after it."""
        events: list[OutputEvent] = []
        for stage in self._stages:
            events = _through(stage, events) + stage.finish()
        return events


def _through(stage: StreamParser, events: list[OutputEvent]) -> list[OutputEvent]:
    out: list[OutputEvent] = []
    for event in events:
        if isinstance(event, TextEvent):
            out.extend(stage.feed(event.text))
        else:
            out.append(event)
    return out


def chain(*stages: StreamParser) -> StreamParser:
    """One stage as it is, several as a `Chain`."""
    return stages[0] if len(stages) == 1 else Chain(*stages)
