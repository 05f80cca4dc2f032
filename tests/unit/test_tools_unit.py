"""tools and tool_choice validation, the tool-call history of messages, and tool calls as templates want them."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import InvalidRequestError
from gateway.openai.guide_checker import default_guide_checker
from gateway.openai.protocol import ChatMessage
from gateway.openai.tools import (
    ToolChoice,
    ToolSpec,
    check_tool_history,
    parse_tool_choice,
    parse_tools,
    template_tool_calls,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def _param(call, *args) -> str | None:
    """The param of the 400 `call` raises, or that the checks of the tools it returns raise (as plan_agent runs)."""
    with pytest.raises(InvalidRequestError) as info:
        result = call(*args)
        if isinstance(result, list):
            asyncio.run(default_guide_checker().run([tool.check for tool in result if tool.check is not None]))
    return info.value.param


def test_tools_are_parsed_into_specs_with_an_empty_schema_for_no_parameters():
    specs = parse_tools([WEATHER, {"type": "function", "function": {"name": "now"}}])
    assert specs == [
        ToolSpec("get_weather", WEATHER["function"]["parameters"], "Weather of a city", True),
        ToolSpec("now", {"type": "object", "properties": {}}),
    ]
    assert parse_tools(None) == []


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ({"type": "function"}, "tools"),
        ([{"type": "retrieval"}], "tools[0].type"),
        ([WEATHER, {"type": "function"}], "tools[1].function"),
        ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "x" * 65}}], "tools[0].function.name"),
        ([WEATHER, WEATHER], "tools[1].function.name"),
        ([{"type": "function", "function": {"name": "a", "description": 3}}], "tools[0].function.description"),
        ([{"type": "function", "function": {"name": "a", "strict": "no"}}], "tools[0].function.strict"),
        ([{"type": "function", "function": {"name": "a", "parameters": "object"}}], "tools[0].function.parameters"),
        (
            [
                WEATHER,
                {"type": "function", "function": {"name": "b"}},
                {
                    "type": "function",
                    "function": {"name": "c", "parameters": {"type": "object", "properties": {"x": {"type": 12}}}},
                },
            ],
            "tools[2].function.parameters",
        ),
    ],
)
def test_a_bad_tool_is_a_400_naming_the_field(tools, param):
    assert _param(parse_tools, tools) == param


@pytest.mark.parametrize(
    ("tool_choice", "tools", "choice"),
    [
        (None, [], ToolChoice("none")),
        (None, [WEATHER], ToolChoice("auto")),
        ("none", [], ToolChoice("none")),
        ("auto", [WEATHER], ToolChoice("auto")),
        ("required", [WEATHER], ToolChoice("required")),
        ({"type": "function", "function": {"name": "get_weather"}}, [WEATHER], ToolChoice("function", "get_weather")),
    ],
)
def test_tool_choice_is_parsed_against_the_tools(tool_choice, tools, choice):
    assert parse_tool_choice(tool_choice, parse_tools(tools)) == choice
    assert choice.forced == (choice.mode in ("required", "function"))


@pytest.mark.parametrize(
    ("tool_choice", "tools"),
    [
        ("required", []),
        ("always", [WEATHER]),
        ({"type": "function", "function": {"name": "missing"}}, [WEATHER]),
        ({"type": "function"}, [WEATHER]),
        ({"function": {"name": "get_weather"}}, [WEATHER]),
        (["get_weather"], [WEATHER]),
    ],
)
def test_a_bad_tool_choice_is_a_400_naming_tool_choice(tool_choice, tools):
    assert _param(parse_tool_choice, tool_choice, parse_tools(tools)) == "tool_choice"


def _messages(*messages: dict) -> list[ChatMessage]:
    return [ChatMessage(**message) for message in messages]


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_tool_messages_answering_earlier_calls_pass():
    check_tool_history(
        _messages(
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
        )
    )


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            ({"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_1", "content": "y"}),
            "messages[1].tool_call_id",
        ),
        (
            ({"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_9", "content": "y"}),
            "messages[1].tool_call_id",
        ),
        (({"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "y"}), "messages[1].tool_call_id"),
        (
            ({"role": "tool", "tool_call_id": "call_1", "content": "y"}, {"role": "assistant", "tool_calls": [CALL]}),
            "messages[0].tool_call_id",
        ),
    ],
)
def test_a_tool_message_that_answers_no_earlier_call_is_a_400_naming_it(messages, param):
    assert _param(check_tool_history, _messages(*messages)) == param


def test_tool_calls_get_their_arguments_as_a_dict_for_the_template():
    calls = [
        CALL,
        {"id": "c2", "function": {"name": "now", "arguments": ""}},
        {"function": {"name": "x", "arguments": {"a": 1}}},
        {"id": "c4", "function": {"name": "big", "arguments": '{"n": 123456789012345678901234567890}'}},
    ]
    assert template_tool_calls(calls, 3) == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "c2", "type": "function", "function": {"name": "now", "arguments": {}}},
        {"id": None, "type": "function", "function": {"name": "x", "arguments": {"a": 1}}},
        {
            "id": "c4",
            "type": "function",
            "function": {"name": "big", "arguments": {"n": 123456789012345678901234567890}},
        },
    ]


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (
            {"id": "c", "function": {"name": "a", "arguments": "{not json"}},
            "messages[2].tool_calls[1].function.arguments",
        ),
        ({"id": "c", "function": {"name": "a", "arguments": "[1, 2]"}}, "messages[2].tool_calls[1].function.arguments"),
        ({"id": "c", "function": {"name": "a", "arguments": 7}}, "messages[2].tool_calls[1].function.arguments"),
        ({"id": "c", "function": {"arguments": "{}"}}, "messages[2].tool_calls[1].function"),
        ({"id": "c"}, "messages[2].tool_calls[1].function"),
    ],
)
def test_tool_calls_with_bad_arguments_are_a_400_naming_the_field(call, param):
    assert _param(template_tool_calls, [CALL, call], 2) == param


def test_auto_without_tools_is_taken_as_none() -> None:
    """Clients and frameworks send `tool_choice: auto` as a default, with or without tools."""
    assert parse_tool_choice("auto", []).mode == "none"
