"""Which parsers one choice of a request gets, from the served model's parser names and the request.

- reasoning first, unless a guide constrains the output (the guide starts at the first token, so there is no
  reasoning to split off, and JSON must not end up in `reasoning_content`); whether the answer starts inside the
  reasoning is read from the rendered prompt;
- a forced call (`tool_choice` `required` or named, enforced by `guides.tool_choice_guide`) -> `forced`, which
  needs no model-specific parser; ids in the model's style (Mistral templates take 9-character ids back);
- tools the model may call (`auto`) -> the model's tool parser; without one, the request cannot be served;
- `tool_choice` `none` or no tools -> no tool parser (markup in the answer stays content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.core.parsers.base import random_call_id
from gateway.core.parsers.chain import StreamParser, chain
from gateway.core.parsers.reasoning import prompt_opens_reasoning
from gateway.core.parsers.registry import TOOL_PARSERS, make_reasoning_parser, make_tool_parser
from gateway.core.request import ToolChoice, ToolSpec
from gateway.errors import UnsupportedFeatureError


def choice_parser(
    *,
    tool_parser: str | None,
    reasoning_parser: str | None,
    tools: Sequence[ToolSpec],
    tool_choice: ToolChoice,
    guided: bool,
    prompt: str,
    new_id: Callable[[], str] | None = None,
) -> StreamParser | None:
    """A fresh parser for one choice (None: the text needs none). Check once per request: it raises for tools
    with `auto` when the model has no tool parser."""
    stages: list[StreamParser] = []
    if reasoning_parser and not guided:
        stages.append(make_reasoning_parser(reasoning_parser, start_in_reasoning=prompt_opens_reasoning(prompt)))
    names = [tool.name for tool in tools]
    if tool_choice.forced:
        style = TOOL_PARSERS[tool_parser].default_id if tool_parser else random_call_id
        stages.append(make_tool_parser("forced", tool_names=names, new_id=new_id or style))
    elif tools and tool_choice.mode == "auto":
        if tool_parser is None:
            raise UnsupportedFeatureError(
                "This model has no tool-call parser configured: call tools with tool_choice 'required' or a named "
                "function (enforced by guided decoding), or start the gateway with a tool-call parser",
                param="tools",
            )
        stages.append(make_tool_parser(tool_parser, tool_names=names, new_id=new_id))
    return chain(*stages) if stages else None
