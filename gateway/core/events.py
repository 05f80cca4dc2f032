"""What one choice produces, as typed events: the vocabulary between processors, the choice runner and encoders.

A choice's output is a sequence of events ending with exactly one `FinishEvent`. Processors (stop strings,
tool-call and reasoning parsers) take events and give events; each protocol's encoder turns them into its own
objects. A new kind of output (say, audio) is a new event class here, a case in each encoder, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.usage import Usage
from gateway.engine.base import TokenLogprob, TopLogprob

__all__ = [
    "ChoiceEvent",
    "FinishEvent",
    "OutputEvent",
    "ReasoningEvent",
    "TextEvent",
    "TokenLogprob",
    "ToolCallEvent",
    "TopLogprob",
]


@dataclass(slots=True)
class TextEvent:
    """New content text (never cumulative), with the log-probabilities of its tokens when asked."""

    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class ReasoningEvent:
    """New reasoning text (`reasoning_content`), from a reasoning parser."""

    text: str


@dataclass(slots=True)
class ToolCallEvent:
    """A piece of a tool call. The first piece of a call has `id` and `name`; `arguments` is a JSON fragment."""

    call_index: int  # position among this choice's tool calls
    id: str | None
    name: str | None
    arguments: str


@dataclass(slots=True)
class FinishEvent:
    """The end of a choice: why it ended, what it used, and the stop string that ended it when the gateway matched
    one (Messages' `stop_sequence`)."""

    reason: str  # "stop", "length", "tool_calls"
    usage: Usage
    stop_sequence: str | None = None


OutputEvent = TextEvent | ReasoningEvent | ToolCallEvent
ChoiceEvent = OutputEvent | FinishEvent
