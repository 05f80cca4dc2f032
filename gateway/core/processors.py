"""The per-choice chain of processors between the engine's text and the encoders.

A processor takes the output events of one choice and gives output events: stop strings trim text today;
tool-call and reasoning parsers join the chain the same way. An empty chain is the identity and costs nothing
per token. A processor that has seen the end of the choice's output (a stop string matched) says so with
`ended`, and the choice then stops its generation upstream.
"""

from __future__ import annotations

from typing import Protocol

from gateway.core.events import OutputEvent, TextEvent, TokenLogprob
from gateway.core.stops import StopMatcher
from gateway.engine.base import GenerationRequest


class Processor(Protocol):
    """One step of a choice's chain."""

    ended: bool  # nothing more will come out: the generation can stop

    def feed(self, events: list[OutputEvent]) -> list[OutputEvent]:
        """Events to pass on for these events."""
        ...

    def finish(self) -> list[OutputEvent]:
        """What is still held back, at the end of the generation."""
        ...


class StopStrings:
    """Ends the text before the first stop string (OpenAI semantics), across chunk borders.

    Held-back text keeps its tokens' logprobs with it: they go out with the text they belong to, and are
    dropped with it when a stop string matches.
    """

    __slots__ = ("_held_logprobs", "_matcher", "ended")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._matcher = StopMatcher(stops)
        self._held_logprobs: list[TokenLogprob] = []
        self.ended = False

    def feed(self, events: list[OutputEvent]) -> list[OutputEvent]:
        """Trim text events; other events pass unchanged (none follow a match)."""
        out: list[OutputEvent] = []
        for event in events:
            if self.ended:
                break
            if not isinstance(event, TextEvent):
                out.append(event)
                continue
            text = self._matcher.feed(event.text)
            logprobs = self._take_logprobs(event.logprobs, bool(text))
            if self._matcher.matched:
                self.ended = True
            if text or logprobs:
                out.append(TextEvent(text, logprobs))
        return out

    @property
    def matched_stop(self) -> str | None:
        """The stop string that ended the text, if one did."""
        return self._matcher.stop

    def finish(self) -> list[OutputEvent]:
        """The held-back tail (a partial match that never completed)."""
        tail = self._matcher.flush()
        logprobs = self._take_logprobs(None, True)
        return [TextEvent(tail, logprobs)] if tail or logprobs else []

    def _take_logprobs(self, new: list[TokenLogprob] | None, release: bool) -> list[TokenLogprob] | None:
        """The logprobs to send with the text that goes out now; the rest waits with the held text."""
        if new is None and not self._held_logprobs:
            return None
        held = self._held_logprobs + (new or [])
        if release and not self._matcher.matched:
            self._held_logprobs = []
            return held
        if self._matcher.matched:
            self._held_logprobs = []
            return held if release else None
        self._held_logprobs = held
        return None


def stop_chain(request: GenerationRequest) -> list[Processor]:
    """The processors of a plain choice: stop strings when there are any (empty: the identity)."""
    return [StopStrings(request.stop)] if request.stop else []


def run_chain(chain: list[Processor], events: list[OutputEvent]) -> list[OutputEvent]:
    """Pass events through every processor in turn."""
    for processor in chain:
        events = processor.feed(events)
    return events


def finish_chain(chain: list[Processor]) -> list[OutputEvent]:
    """Flush every processor in turn: what one releases still goes through those after it."""
    events: list[OutputEvent] = []
    for processor in chain:
        events = processor.feed(events) + processor.finish()
    return events
