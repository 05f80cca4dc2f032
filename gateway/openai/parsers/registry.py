"""The parsers by name: tool-call parsers, reasoning parsers, and the markers they must see."""

from __future__ import annotations

from collections.abc import Callable, Collection

from gateway.errors import ConfigurationError
from gateway.openai.parsers.base import ToolParser
from gateway.openai.parsers.deepseek import DeepSeekV3ToolParser
from gateway.openai.parsers.forced import ForcedCallsParser
from gateway.openai.parsers.hermes import HermesToolParser
from gateway.openai.parsers.llama3 import Llama3JsonToolParser
from gateway.openai.parsers.mistral import MistralToolParser
from gateway.openai.parsers.pythonic import PythonicToolParser
from gateway.openai.parsers.reasoning import ThinkReasoningParser

TOOL_PARSERS: dict[str, type[ToolParser]] = {
    cls.name: cls
    for cls in (
        HermesToolParser,
        Llama3JsonToolParser,
        MistralToolParser,
        DeepSeekV3ToolParser,
        PythonicToolParser,
        ForcedCallsParser,
    )
}
# name -> whether the answer starts inside the reasoning when the prompt does not say
REASONING_PARSERS: dict[str, bool] = {"deepseek_r1": True, "qwen3": False}
REASONING_MARKERS = ThinkReasoningParser.markers


def markers_lost_to(
    special_tokens: Collection[str], tool_parser: str | None, reasoning_parser: str | None
) -> list[str]:
    """The parsers' markers that are special tokens of the tokenizer: decoding with `skip_special_tokens` drops
    them (Mistral's `[TOOL_CALLS]`, Llama's `<|python_tag|>`), and the parsers can then not see the calls."""
    markers = TOOL_PARSERS[tool_parser].markers if tool_parser else ()
    if reasoning_parser:
        markers += REASONING_MARKERS
    return [marker for marker in markers if marker in special_tokens]


def make_tool_parser(
    name: str, *, tool_names: Collection[str] | None = None, new_id: Callable[[], str] | None = None
) -> ToolParser:
    """A fresh tool parser for one choice; `tool_names` (the request's tools) turns unknown names into content."""
    try:
        cls = TOOL_PARSERS[name]
    except KeyError:
        raise ConfigurationError(f"unknown tool parser {name!r}; known: {', '.join(sorted(TOOL_PARSERS))}") from None
    return cls(tool_names=tool_names, new_id=new_id)


def make_reasoning_parser(name: str, *, start_in_reasoning: bool | None = None) -> ThinkReasoningParser:
    """A fresh reasoning parser for one choice; pass `prompt_opens_reasoning(prompt)` when the prompt is known."""
    try:
        default = REASONING_PARSERS[name]
    except KeyError:
        known = ", ".join(sorted(REASONING_PARSERS))
        raise ConfigurationError(f"unknown reasoning parser {name!r}; known: {known}") from None
    return ThinkReasoningParser(name, start_in_reasoning=default if start_in_reasoning is None else start_in_reasoning)
