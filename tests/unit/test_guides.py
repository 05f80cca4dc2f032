"""Guides: response_format, structured_outputs, guided_* and forced tool calls as TensorRT-LLM guides.

Planning a guide checks only its bounds; `_error` and `_checked` also run what it leaves for the GuideChecker
(meta-schema, regex, xgrammar), as `plan_agent` does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.openai import guides
from gateway.openai.guide_checker import UNCHECKED, GuideChecker, default_guide_checker
from gateway.openai.guide_worker import xgrammar
from gateway.openai.guides import (
    JSON_OBJECT,
    Guide,
    GuidePlan,
    choice_guide,
    legacy_guide,
    plan_guide,
    response_format_guide,
    structured_outputs_guide,
    tool_choice_guide,
)
from gateway.openai.parsers import make_tool_parser
from gateway.openai.schema_bounds import GuideLimits
from gateway.openai.tools import ToolChoice, parse_tool_choice, parse_tools
from tests.unit.parser_samples import counter_ids, feed_all, merge

needs_xgrammar = pytest.mark.skipif(xgrammar() is None, reason="xgrammar is not installed")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = parse_tools(
    [
        {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}},
        {"type": "function", "function": {"name": "get_time"}},
    ]
)


def _checked(result: Any, checker: GuideChecker | None = None) -> Any:
    """`result` (a Guide, a GuidePlan or ToolSpecs) once the checks it leaves have run."""
    if isinstance(result, Guide):
        checks = [result.check] if result.check is not None else []
    elif isinstance(result, GuidePlan):
        checks = list(result.checks)
    else:
        checks = [tool.check for tool in result or () if tool.check is not None]
    asyncio.run((checker or default_guide_checker()).run(checks))
    return result


def _error(call, *args, **kwargs) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        _checked(call(*args, **kwargs))
    return info.value


def _accepts(guide: Guide, text: str) -> bool:
    from xgrammar.testing import _is_grammar_accept_string

    grammar = xgrammar().Grammar
    compiled = {
        "json_schema": grammar.from_json_schema,
        "regex": grammar.from_regex,
        "ebnf_grammar": grammar.from_ebnf,
    }[guide.type](guide.guide)
    return _is_grammar_accept_string(compiled, text)


@pytest.mark.parametrize(
    ("response_format", "guide"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, JSON_OBJECT),
        ({"type": "json_schema", "json_schema": {"name": "city"}}, JSON_OBJECT),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
            Guide("json_schema", json.dumps(SCHEMA, separators=(",", ":"))),
        ),
    ],
)
def test_response_format_becomes_a_guide(response_format, guide):
    assert response_format_guide(response_format) == guide


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "yaml"}, "response_format.type"),
        ("json_object", "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "has space", "schema": SCHEMA}},
            "response_format.json_schema.name",
        ),
        ({"type": "json_schema", "json_schema": {"name": "x", "strict": "yes"}}, "response_format.json_schema.strict"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}},
            "response_format.json_schema.schema",
        ),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}, "response_format.json_schema.schema"),
    ],
)
def test_bad_response_format_is_a_400_naming_the_field(response_format, param):
    assert _error(response_format_guide, response_format).param == param


def test_a_schema_sent_again_is_neither_measured_nor_checked_again(monkeypatch):
    measured, ran = [], []
    real_measure, real_run = guides.schema_size_problem, GuideChecker._run_one
    monkeypatch.setattr(guides, "schema_size_problem", lambda *args: measured.append(1) or real_measure(*args))

    async def counting_run(self, check, deadline):
        ran.append(check)
        return await real_run(self, check, deadline)

    monkeypatch.setattr(GuideChecker, "_run_one", counting_run)
    schema = {"type": "object", "properties": {"only_in_this_test": {"type": "integer"}}}
    for _ in range(3):
        guide = _checked(response_format_guide({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
        assert guide == Guide("json_schema", json.dumps(schema, separators=(",", ":")))
    assert len(measured) == len(ran) == 1 and ran[0].param == "response_format.json_schema.schema"


def test_a_large_schema_is_checked_once_and_its_verdict_kept_by_digest():
    checker = GuideChecker(GuideLimits(max_properties=5000))
    big = {"type": "object", "properties": {f"p{i:05d}": {"type": "string"} for i in range(3000)}}
    bad = big | {"required": "p00001"}
    try:
        assert checker.cached("json_schema", json.dumps(big, separators=(",", ":"))) is UNCHECKED
        guide = _checked(guides.schema_guide(big, "guided_json", checker), checker)
        assert checker.cached("json_schema", guide.guide) is None and len(guide.guide) > 64 * 1024
        with pytest.raises(InvalidRequestError) as first:
            _checked(guides.schema_guide(bad, "guided_json", checker), checker)
        with pytest.raises(InvalidRequestError) as again:  # refused from the cache, before any check is left
            guides.schema_guide(bad, "guided_json", checker)
        assert again.value.message == first.value.message
    finally:
        checker.close()


def test_a_bad_schema_sent_again_is_refused_again_naming_each_field():
    schema = {"type": "object", "properties": {"cached_bad": {"type": "strin"}}}
    first = _error(response_format_guide, {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    with pytest.raises(InvalidRequestError) as again:
        parse_tools([tool])
    assert first.param == "response_format.json_schema.schema"
    assert again.value.param == "tools[0].function.parameters"
    assert again.value.message == first.message and "strin" in first.message


@needs_xgrammar
def test_a_schema_valid_for_jsonschema_but_not_compilable_by_xgrammar_is_a_400():
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    error = _error(response_format_guide, {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert error.param == "response_format.json_schema.schema"
    assert "missing" in error.message and "/project" not in error.message


@pytest.mark.parametrize(
    ("structured_outputs", "guide"),
    [
        (None, None),
        ({"json": SCHEMA}, Guide("json_schema", json.dumps(SCHEMA, separators=(",", ":")))),
        ({"json": json.dumps(SCHEMA)}, Guide("json_schema", json.dumps(SCHEMA, separators=(",", ":")))),
        ({"regex": r"\d{3}-\d{4}"}, Guide("regex", r"\d{3}-\d{4}")),
        ({"choice": ["yes", "no"]}, Guide("ebnf_grammar", 'root ::= "yes" | "no"')),
        ({"grammar": 'root ::= "a" | "b"'}, Guide("ebnf_grammar", 'root ::= "a" | "b"')),
        ({"json_object": True, "disable_fallback": True}, JSON_OBJECT),
    ],
)
def test_structured_outputs_becomes_a_guide(structured_outputs, guide):
    assert structured_outputs_guide(structured_outputs) == guide


@pytest.mark.parametrize(
    ("structured_outputs", "param"),
    [
        ([], "structured_outputs"),
        ({}, "structured_outputs"),
        ({"regex": "a", "choice": ["a"]}, "structured_outputs"),
        ({"json": "{not json"}, "structured_outputs.json"),
        ({"regex": "a("}, "structured_outputs.regex"),
        ({"regex": ""}, "structured_outputs.regex"),
        ({"choice": []}, "structured_outputs.choice"),
        ({"choice": ["a", 1]}, "structured_outputs.choice"),
        ({"json_object": "yes"}, "structured_outputs.json_object"),
    ],
)
def test_bad_structured_outputs_is_a_400_naming_the_field(structured_outputs, param):
    assert _error(structured_outputs_guide, structured_outputs).param == param


def test_structural_tag_is_refused_as_unsupported_by_tensorrt_llm():
    with pytest.raises(UnsupportedFeatureError) as info:
        structured_outputs_guide({"structural_tag": {"structures": []}})
    assert info.value.param == "structured_outputs.structural_tag"


@needs_xgrammar
@pytest.mark.parametrize(
    ("field", "value"),
    [("structured_outputs.regex", r"(?<=a)b"), ("structured_outputs.grammar", "root ::= ")],
)
def test_guides_xgrammar_cannot_compile_are_a_400(field, value):
    key = field.rpartition(".")[2]
    assert _error(structured_outputs_guide, {key: value}).param == field


@pytest.mark.parametrize(
    ("field", "value", "guide"),
    [
        ("guided_json", SCHEMA, Guide("json_schema", json.dumps(SCHEMA, separators=(",", ":")))),
        ("guided_regex", "[a-z]+", Guide("regex", "[a-z]+")),
        ("guided_choice", ["x"], Guide("ebnf_grammar", 'root ::= "x"')),
        ("guided_grammar", 'root ::= "x"', Guide("ebnf_grammar", 'root ::= "x"')),
        ("guided_json", None, None),
    ],
)
def test_legacy_guided_fields_become_guides(field, value, guide):
    assert legacy_guide(field, value) == guide
    assert plan_guide(**{field: value}).guide == guide


def test_choice_literals_escape_quotes_backslashes_and_control_characters():
    guide = choice_guide(['say "hi"', "a\\b", "line\nbreak\t\x01f", "same", "same"], "guided_choice")
    assert guide.guide == r'root ::= "say \"hi\"" | "a\\b" | "line\nbreak\t\u0001f" | "same"'


@needs_xgrammar
@settings(max_examples=40, deadline=None)
@given(choices=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4), other=st.text(max_size=8))
def test_the_choice_grammar_accepts_exactly_the_choices(choices, other):
    guide = choice_guide(choices, "guided_choice")
    assert all(_accepts(guide, choice) for choice in choices)
    assert _accepts(guide, other) == (other in choices)


def test_two_content_guides_at_once_are_a_400_naming_the_second():
    error = _error(plan_guide, response_format={"type": "json_object"}, guided_regex="a+")
    assert error.param == "guided_regex"


def test_a_forced_tool_call_wins_over_response_format():
    plan = plan_guide(
        tools=TOOLS, tool_choice=ToolChoice("function", "get_time"), response_format={"type": "json_object"}
    )
    assert plan.forced_tool_calls and plan.guide is not None and plan.guide.type == "json_schema"


def test_response_format_with_callable_tools_is_left_unenforced_and_said_so():
    plan = plan_guide(tools=TOOLS, tool_choice=ToolChoice("auto"), response_format={"type": "json_object"})
    assert plan == plan.__class__(None, unenforced="response_format")
    assert plan_guide(tools=TOOLS, tool_choice=ToolChoice("none"), response_format={"type": "json_object"}).guide


def _forced_schema(tool_choice: ToolChoice, parallel: bool = True) -> dict:
    guide = tool_choice_guide(TOOLS, tool_choice, parallel)
    assert guide.type == "json_schema"
    return json.loads(guide.guide)


def test_a_named_function_is_forced_as_exactly_one_call_of_it():
    schema = _forced_schema(ToolChoice("function", "get_weather"))
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    assert not validator.is_valid([{"name": "get_time", "arguments": {}}])
    assert not validator.is_valid([{"name": "get_weather", "arguments": {}}])
    assert not validator.is_valid([{"name": "get_weather", "arguments": {"city": "a"}}] * 2)
    assert not validator.is_valid([])


@pytest.mark.parametrize(("parallel", "most"), [(True, None), (False, 1)])
def test_required_forces_one_or_more_calls_of_any_tool(parallel, most):
    schema = _forced_schema(ToolChoice("required"), parallel)
    assert schema.get("maxItems") == most
    validator = jsonschema.Draft202012Validator(schema)
    two = [{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert validator.is_valid(two) == parallel
    assert validator.is_valid(two[:1])
    assert not validator.is_valid([{"name": "other", "arguments": {}}])


def test_forced_call_schema_keeps_a_tools_own_refs_working():
    node = {
        "type": "object",
        "properties": {"value": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
        "required": ["value", "next"],
    }
    parameters = {"type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}, "$defs": {"node": node}}
    tools = parse_tools([{"type": "function", "function": {"name": "walk", "parameters": parameters}}])
    guide = tool_choice_guide(tools, ToolChoice("required"), True)
    validator = jsonschema.Draft202012Validator(json.loads(guide.guide))
    good = [{"name": "walk", "arguments": {"head": {"value": 1, "next": {"value": 2, "next": None}}}}]
    assert validator.is_valid(good)
    assert not validator.is_valid([{"name": "walk", "arguments": {"head": {"value": "x", "next": None}}}])
    _checked(guide)
    if xgrammar() is not None:
        assert _accepts(guide, json.dumps(good))
        assert not _accepts(guide, json.dumps([{"name": "walk", "arguments": {"head": {"value": 1}}}]))


def test_output_that_follows_the_forced_guide_becomes_the_tool_calls():
    choice = parse_tool_choice("required", TOOLS)
    schema = json.loads(plan_guide(tools=TOOLS, tool_choice=choice).guide.guide)
    output = '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]'
    jsonschema.validate(json.loads(output), schema)
    parser = make_tool_parser("forced", tool_names=[tool.name for tool in TOOLS], new_id=counter_ids())
    events = feed_all(parser, list(output))
    assert merge(events) == ("", "", [("get_weather", {"city": "Paris"}), ("get_time", {})])
