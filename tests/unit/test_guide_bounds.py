"""Bounds on guides and tools (issue 26): each limit refuses cheaply, with a 400 naming the field, the limit and
its flag; lone surrogates anywhere in a guide or a tool are named to the exact place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.app import guide_limits
from gateway.config import Settings
from gateway.errors import InvalidRequestError
from gateway.openai.guide_checker import GuideChecker
from gateway.openai.guides import choice_guide, grammar_guide, legacy_guide, regex_guide, schema_guide
from gateway.openai.schema_bounds import GuideLimits, compact_json, measure_schema
from gateway.openai.tools import parse_tools, template_tool_calls
from tests.hostile_schemas import distinct_tools, large_enum, nested, ref_chain, tool, wide_object

LIMITS = GuideLimits(max_bytes=4096, max_depth=10, max_refs=5, max_enum_values=20, max_properties=8, max_tools=4,
                     max_tools_bytes=2048)  # fmt: skip
CHECKER = GuideChecker(LIMITS)  # bounds only: nothing here reaches its workers


def refused(call: Any, *args: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        call(*args)
    return info.value


def test_measure_counts_depth_refs_enum_values_branches_and_the_widest_object() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"enum": [1, 2, 3]}, "b": {"anyOf": [{"$ref": "#/$defs/x"}, {"type": "null"}]}},
        "$defs": {"x": {"type": "object", "properties": {"p": {}, "q": {}, "r": {}}}},
    }
    size = measure_schema(schema)
    assert (size.depth, size.refs, size.enum_values, size.widest_object) == (5, 1, 5, 3)
    assert measure_schema(nested(1000)).depth == 1001  # iterative: no recursion limit to hit


@pytest.mark.parametrize(
    ("schema", "flag", "number"),
    [
        (nested(10, "array"), "--max-guide-depth", "11 levels"),
        (ref_chain(6), "--max-guide-refs", "7 $refs"),
        (large_enum(21), "--max-guide-enum-values", "21 enum values"),
        ({"anyOf": [{"const": i} for i in range(21)]}, "--max-guide-enum-values", "21 enum values"),
        (wide_object(9), "--max-guide-properties", "9 properties"),
        ({"type": "string", "description": "x" * 5000}, "--max-guide-bytes", "bytes"),
    ],
)
def test_a_schema_beyond_a_bound_is_a_400_naming_field_limit_and_flag(schema: Any, flag: str, number: str) -> None:
    error = refused(schema_guide, schema, "guided_json", CHECKER)
    assert error.param == "guided_json" and flag in error.message and number in error.message


def test_a_schema_within_every_bound_leaves_its_check_for_the_worker() -> None:
    guide = schema_guide(ref_chain(4), "response_format.json_schema.schema", CHECKER)
    assert guide.check is not None and guide.check.kind == "json_schema"
    assert guide.check.param == "response_format.json_schema.schema" and guide.check.source == guide.guide


def test_a_schema_given_as_text_is_bounded_before_it_is_parsed() -> None:
    error = refused(legacy_guide, "guided_json", "[" * 100_000, CHECKER)
    assert error.param == "guided_json" and "--max-guide-bytes" in error.message
    deep = "[" * 3000 + "]" * 3000  # json.loads raises RecursionError on this
    assert refused(legacy_guide, "guided_json", deep, GuideChecker(GuideLimits())).param == "guided_json"


@pytest.mark.parametrize(
    ("call", "value", "flag"),
    [
        (regex_guide, "a" * 5000, "--max-guide-bytes"),
        (grammar_guide, 'root ::= "' + "a" * 5000 + '"', "--max-guide-bytes"),
        (choice_guide, [f"c{i}" for i in range(21)], "--max-guide-enum-values"),
        (choice_guide, ["x" * 3000, "y" * 3000], "--max-guide-bytes"),
    ],
)
def test_regexes_grammars_and_choices_are_bounded(call: Any, value: Any, flag: str) -> None:
    error = refused(call, value, "structured_outputs.x", CHECKER)
    assert error.param == "structured_outputs.x" and flag in error.message


@pytest.mark.parametrize(
    ("call", "value", "param"),
    [
        (choice_guide, ["ok", "a\ud800"], "guided_choice[1]"),
        (regex_guide, "[a-z]\udfff", "guided_choice"),
        (grammar_guide, 'root ::= "\ud800"', "guided_choice"),
        (schema_guide, {"type": "object", "properties": {"k": {"enum": ["a", "\ud800"]}}}, "guided_choice"),
        (schema_guide, {"type": "object", "properties": {"\ud800": {}}}, "guided_choice.properties"),
    ],
)
def test_lone_surrogates_in_guides_are_named(call: Any, value: Any, param: str) -> None:
    error = refused(call, value, "guided_choice", CHECKER)
    assert error.param.startswith(param) and "surrogate" in error.message


def test_a_schema_number_beyond_64_bits_is_a_400() -> None:
    error = refused(compact_json, {"maximum": 2**80}, "guided_json")
    assert error.param == "guided_json" and "64-bit" in error.message


def test_too_many_tools_and_too_many_tool_bytes_are_refused_before_any_schema() -> None:
    error = refused(parse_tools, distinct_tools(5), CHECKER)
    assert error.param == "tools" and "--max-tools" in error.message and "5 tools" in error.message
    big = [tool(f"t{i}", {"type": "object"}, description="d" * 800) for i in range(3)]
    assert json.dumps(big[:2]).__len__() < 2048 < len(json.dumps(big))
    error = refused(parse_tools, big, CHECKER)
    assert error.param == "tools[2]" and "--max-tools-bytes" in error.message


@pytest.mark.parametrize(
    ("entry", "param"),
    [
        (tool("f", {"type": "object"}, description="x\ud800"), "tools[0].function.description"),
        ({**tool("f", {"type": "object"}), "cache_control": {"note": "\udfff"}}, "tools[0].cache_control.note"),
        (tool("f", {"type": "object", "properties": {"a": {"default": ["\ud800"]}}}),
         "tools[0].function.parameters.properties.a.default[0]"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_anywhere_in_a_tool_is_named(entry: dict[str, Any], param: str) -> None:
    assert refused(parse_tools, [entry], CHECKER).param == param


def test_each_tool_schema_is_bounded_and_named() -> None:
    tools = [tool("a", {"type": "object"}), tool("b", nested(10))]
    error = refused(parse_tools, tools, CHECKER)
    assert error.param == "tools[1].function.parameters" and "--max-guide-depth" in error.message


@pytest.mark.parametrize(
    "arguments", ['{"a": "\\ud800"}', '{"\\udfff": 1}', "[" * 2000 + "]" * 2000, '{"a":' + "[" * 500 + "]" * 500 + "}"]
)
def test_tool_call_arguments_with_escaped_surrogates_or_too_deep_are_a_400(arguments: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]
    error = refused(template_tool_calls, calls, 3)
    assert error.param == "messages[3].tool_calls[0].function.arguments"


def test_the_settings_defaults_are_the_limits_defaults() -> None:
    assert guide_limits(Settings()) == GuideLimits()
    flags = guide_limits(Settings(max_guide_refs=7, max_tools=3, guide_check_timeout_s=1.5))
    assert (flags.max_refs, flags.max_tools, flags.check_timeout_s) == (7, 3, 1.5)
