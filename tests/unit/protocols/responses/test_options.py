"""Responses' tools, tool_choice, text.format, reasoning and include in the core's terms."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import OutputConstraint, ReasoningOptions, ToolChoice
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.responses.options import (
    Includes,
    output_constraint,
    parse_include,
    parse_tool_choice,
    parse_tools,
    reasoning_options,
)
from gateway.protocols.responses.request import ReasoningConfig, TextConfig

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


def test_flat_function_tools_become_tool_specs_named_by_their_place() -> None:
    [spec, bare] = parse_tools([WEATHER, {"type": "function", "name": "now"}])
    assert (spec.name, spec.description, spec.strict, spec.definition) == ("get_weather", "Weather", True, None)
    assert (spec.param, spec.parameters_param) == ("tools[0]", "tools[0].parameters")
    assert bare.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("tools", "param", "unsupported"),
    [
        ([WEATHER, {"type": "web_search"}], "tools[1].type", True),
        ([{"type": "mcp", "server_label": "x"}], "tools[0].type", True),
        ([{"name": "no type"}], "tools[0].type", False),
        ([{"type": "function", "name": "bad name!"}], "tools[0].name", False),
        ([{"type": "function", "name": "f", "parameters": "x"}], "tools[0].parameters", False),
        ([{"type": "function", "name": "f", "strict": "yes"}], "tools[0].strict", False),
        ({"type": "function"}, "tools", False),
    ],
)
def test_tools_that_cannot_be_served_are_400s_naming_them(tools: Any, param: str, unsupported: bool) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_tools(tools)
    assert refused.value.param == param
    assert isinstance(refused.value, UnsupportedFeatureError) == unsupported


ALLOWED_X = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]}


def test_tool_choice_modes_named_functions_and_allowed_subsets() -> None:
    specs = parse_tools([WEATHER, {"type": "function", "name": "now"}])
    assert parse_tool_choice(None, specs) == ToolChoice("auto")
    assert parse_tool_choice(None, ()) == parse_tool_choice("auto", ()) == ToolChoice("none")
    assert parse_tool_choice("required", specs) == ToolChoice("required")
    assert parse_tool_choice({"type": "function", "name": "now"}, specs) == ToolChoice("function", "now")
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "now"}]}
    assert parse_tool_choice(allowed, specs) == ToolChoice("required", allowed=frozenset({"now"}))


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "name": "nope"}, "tool_choice.name"),
        ({"type": "file_search"}, "tool_choice.type"),
        (ALLOWED_X, "tool_choice.tools[0]"),
        ({"type": "allowed_tools", "mode": "sometimes", "tools": []}, "tool_choice.mode"),
        ("maybe", "tool_choice"),
    ],
)
def test_bad_tool_choices_are_400s_naming_the_field(choice: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_tool_choice(choice, parse_tools([WEATHER]))
    assert refused.value.param == param


def test_text_format_is_the_output_constraint() -> None:
    assert output_constraint(None) is None and output_constraint(TextConfig(format={"type": "text"})) is None
    assert output_constraint(TextConfig(format={"type": "json_object"})) == OutputConstraint(
        "json_object", field="text.format"
    )
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "A", "schema": schema, "strict": True}
    assert output_constraint(TextConfig(format=fmt)) == OutputConstraint(
        "json_schema", schema, "text.format.schema", "text.format"
    )
    for bad, param in (({"type": "yaml"}, "text.format.type"), ({"type": "json_schema", "schema": {}},
                       "text.format.name"), ({"type": "json_schema", "name": "A"}, "text.format.schema")):  # fmt: skip
        with pytest.raises(InvalidRequestError) as refused:
            output_constraint(TextConfig(format=bad))
        assert refused.value.param == param


def test_reasoning_effort_reaches_templates_and_none_switches_thinking_off() -> None:
    assert reasoning_options(None) is None and reasoning_options(ReasoningConfig(summary="auto")) is None
    assert reasoning_options(ReasoningConfig(effort="high")) == ReasoningOptions(effort="high")
    assert reasoning_options(ReasoningConfig(effort="none")) == ReasoningOptions(effort="none", enabled=False)


def test_include_values() -> None:
    assert parse_include(None) == Includes()
    both = parse_include(["message.output_text.logprobs", "reasoning.encrypted_content", "file_search_call.results"])
    assert both == Includes(logprobs=True, encrypted_reasoning=True)
    with pytest.raises(InvalidRequestError) as refused:
        parse_include(["reasoning.encrypted_content", "everything"])
    assert refused.value.param == "include[1]"
