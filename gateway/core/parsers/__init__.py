"""Streaming tool-call and reasoning parsers, chosen by name, and their composition.

    parser = chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes", tool_names={"get_weather"}))
    events = parser.feed(piece)   # per decoded piece: TextEvent, ReasoningEvent, ToolCallEvent
    events = parser.finish()      # at the end of the generation
    parser.has_tool_calls         # finish_reason "tool_calls"

`choice_parser(...)` picks the stages for one choice of a request; `ParserProcessor(parser)` makes a parser a
step of the choice's processor chain (events in, events out).
"""

from __future__ import annotations

from gateway.core.parsers.base import ToolParser, random_call_id, random_mistral_id
from gateway.core.parsers.chain import Chain, StreamParser, chain
from gateway.core.parsers.detect import DetectedParsers, detect_parsers
from gateway.core.parsers.plan import choice_parser
from gateway.core.parsers.processor import ParserProcessor
from gateway.core.parsers.reasoning import ThinkReasoningParser, prompt_opens_reasoning
from gateway.core.parsers.registry import (
    REASONING_MARKERS,
    REASONING_PARSERS,
    TOOL_PARSERS,
    make_reasoning_parser,
    make_tool_parser,
    markers_lost_to,
)

__all__ = [
    "REASONING_MARKERS",
    "REASONING_PARSERS",
    "TOOL_PARSERS",
    "Chain",
    "DetectedParsers",
    "ParserProcessor",
    "StreamParser",
    "ThinkReasoningParser",
    "ToolParser",
    "chain",
    "choice_parser",
    "detect_parsers",
    "make_reasoning_parser",
    "make_tool_parser",
    "markers_lost_to",
    "prompt_opens_reasoning",
    "random_call_id",
    "random_mistral_id",
]
