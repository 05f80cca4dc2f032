"""A parser (or a chain of them) as a step of a choice's processor chain (`openai.processors.Processor`).

Text events go through the parser; other events pass unchanged. Log-probabilities travel with the text they
came with: exactly when the parser passes text through as it is (the no-markup path); otherwise they wait for
the next content the parser releases and go out with it, or are dropped when what it releases instead is
reasoning or a tool call (OpenAI gives log-probabilities of content only).
"""

from __future__ import annotations

from gateway.core.events import OutputEvent, TextEvent, TokenLogprob
from gateway.core.parsers.chain import StreamParser


class ParserProcessor:
    """Wraps a `StreamParser`; `has_tool_calls` tells the choice to finish with `tool_calls`."""

    __slots__ = ("_held", "_parser", "ended")

    def __init__(self, parser: StreamParser) -> None:
        self._parser = parser
        self._held: list[TokenLogprob] = []
        self.ended = False  # a parser never ends the generation early

    @property
    def has_tool_calls(self) -> bool:
        """Whether the parser emitted a tool call."""
        return bool(getattr(self._parser, "has_tool_calls", False))

    def feed(self, events: list[OutputEvent]) -> list[OutputEvent]:
        """Text through the parser, the rest as it is."""
        out: list[OutputEvent] = []
        for event in events:
            if not isinstance(event, TextEvent):
                out.append(event)
                continue
            if event.logprobs:
                self._held.extend(event.logprobs)
            self._attach(self._parser.feed(event.text), out)
        return out

    def finish(self) -> list[OutputEvent]:
        """What the parser still holds, at the end of the generation."""
        out: list[OutputEvent] = []
        self._attach(self._parser.finish(), out)
        self._held = []
        return out

    def _attach(self, events: list[OutputEvent], out: list[OutputEvent]) -> None:
        for event in events:
            if isinstance(event, TextEvent):
                if self._held:
                    event.logprobs, self._held = self._held, []
            else:
                self._held = []
            out.append(event)
