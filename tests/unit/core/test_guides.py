"""Guides: output constraints and forced tool calls as TensorRT-LLM guides, and which one a conversation gets.

Building a guide checks only its bounds; `_error` and `_checked` also run what it leaves for the GuideChecker
(meta-schema, regex, xgrammar), as `plan_agent` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import guides
from gateway.core.agents import AgentPlan, plan_agent
from gateway.core.guide_checker import UNCHECKED, GuideCheck, GuideChecker, default_guide_checker
from gateway.core.guide_worker import xgrammar
from gateway.core.guides import JSON_OBJECT, Guide, choice_guide, schema_guide, tool_choice_guide
from gateway.core.parsers import make_tool_parser
from gateway.core.request import (
    Conversation,
    ConversationRequest,
    GenerationOptions,
    OutputConstraint,
    ToolChoice,
    ToolOptions,
    ToolSpec,
)
from gateway.core.schema_bounds import GuideLimits
from gateway.core.served_model import ServedModel
from gateway.core.tools import check_tools, template_tools
from gateway.engine.base import EngineCapabilities
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from tests.unit.core.parser_samples import counter_ids, feed_all, merge
from tests.unit.fake_engine import FakeEngine

needs_xgrammar = pytest.mark.skipif(xgrammar() is None, reason="xgrammar is not installed")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = (ToolSpec("get_weather", SCHEMA), ToolSpec("get_time", {"type": "object", "properties": {}}))
RESPONSE_FORMAT = "response_format.json_schema.schema"


def _checked(result: Any, checker: GuideChecker | None = None) -> Any:
    """`result` (a Guide, or the checks check_tools leaves) once the checks it leaves have run."""
    if isinstance(result, Guide):
        checks: Sequence[GuideCheck] = [result.check] if result.check is not None else []
    else:
        checks = result or []
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
        guide = _checked(schema_guide(schema, RESPONSE_FORMAT))
        assert guide == Guide("json_schema", json.dumps(schema, separators=(",", ":")))
    assert len(measured) == len(ran) == 1 and ran[0].param == RESPONSE_FORMAT


def test_a_large_schema_is_checked_once_and_its_verdict_kept_by_digest():
    checker = GuideChecker(GuideLimits(max_properties=5000))
    big = {"type": "object", "properties": {f"p{i:05d}": {"type": "string"} for i in range(3000)}}
    bad = big | {"required": "p00001"}
    try:
        assert checker.cached("json_schema", json.dumps(big, separators=(",", ":"))) is UNCHECKED
        guide = _checked(schema_guide(big, "guided_json", checker), checker)
        assert checker.cached("json_schema", guide.guide) is None and len(guide.guide) > 64 * 1024
        with pytest.raises(InvalidRequestError) as first:
            _checked(schema_guide(bad, "guided_json", checker), checker)
        with pytest.raises(InvalidRequestError) as again:  # refused from the cache, before any check is left
            schema_guide(bad, "guided_json", checker)
        assert again.value.message == first.value.message
    finally:
        checker.close()


def test_a_bad_schema_sent_again_is_refused_again_naming_each_field():
    schema = {"type": "object", "properties": {"cached_bad": {"type": "strin"}}}
    first = _error(schema_guide, schema, RESPONSE_FORMAT)
    tool = ToolSpec("f", schema, param="tools[0].function", parameters_param="tools[0].function.parameters")
    with pytest.raises(InvalidRequestError) as again:
        _checked(check_tools(ToolOptions((tool,)), default_guide_checker()))
    assert first.param == RESPONSE_FORMAT
    assert again.value.param == "tools[0].function.parameters"
    assert again.value.message == first.message and "strin" in first.message


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


def _agent(
    tools: ToolOptions, constraint: OutputConstraint | None = None, guided: bool = True, compact_json: bool = False
) -> AgentPlan:
    model = ServedModel("m", FakeEngine(), None, None, 16, 100, tool_parser="hermes",  # type: ignore[arg-type]
                        compact_json_guides=compact_json)  # fmt: skip
    request = ConversationRequest(Conversation(()), GenerationOptions(), tools, constraint)
    return asyncio.run(plan_agent(request, model, EngineCapabilities("fake", guided_decoding=guided)))


JSON_ASKED = OutputConstraint("json_object", field="response_format")


def test_a_forced_tool_call_wins_over_an_output_constraint():
    plan = _agent(ToolOptions(TOOLS, ToolChoice("function", "get_time")), JSON_ASKED)
    assert plan.guide is not None and plan.guide.type == "json_schema"


def test_an_output_constraint_with_callable_tools_is_left_unenforced():
    assert _agent(ToolOptions(TOOLS, ToolChoice("auto")), JSON_ASKED).guide is None
    assert _agent(ToolOptions(TOOLS, ToolChoice("none")), JSON_ASKED).guide == JSON_OBJECT


def test_a_guide_the_model_cannot_enforce_is_a_400_naming_the_field_that_asked():
    with pytest.raises(UnsupportedFeatureError) as constraint:
        _agent(ToolOptions(), JSON_ASKED, guided=False)
    with pytest.raises(UnsupportedFeatureError) as forced:
        _agent(ToolOptions(TOOLS, ToolChoice("required"), choice_param="tool_choice"), guided=False)
    assert (constraint.value.param, forced.value.param) == ("response_format", "tool_choice")


def test_allowed_tools_restrict_the_forced_call_but_every_tool_stays_in_the_prompt():
    tools = ToolOptions(TOOLS, ToolChoice("required", allowed=frozenset({"get_time"})))
    schema = json.loads(_agent(tools).guide.guide)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid([{"name": "get_time", "arguments": {}}])
    assert not validator.is_valid([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    assert [tool["function"]["name"] for tool in template_tools(tools)] == ["get_weather", "get_time"]


def test_duplicate_tool_names_are_a_400_naming_the_second():
    specs = [ToolSpec("f", {}, param=f"tools[{i}]", parameters_param=f"tools[{i}].input_schema") for i in range(2)]
    assert _error(check_tools, ToolOptions(tuple(specs)), default_guide_checker()).param == "tools[1].name"


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
    guide = tool_choice_guide([ToolSpec("walk", parameters)], ToolChoice("required"), True)
    validator = jsonschema.Draft202012Validator(json.loads(guide.guide))
    good = [{"name": "walk", "arguments": {"head": {"value": 1, "next": {"value": 2, "next": None}}}}]
    assert validator.is_valid(good)
    assert not validator.is_valid([{"name": "walk", "arguments": {"head": {"value": "x", "next": None}}}])
    _checked(guide)
    if xgrammar() is not None:
        assert _accepts(guide, json.dumps(good))
        assert not _accepts(guide, json.dumps([{"name": "walk", "arguments": {"head": {"value": 1}}}]))


def test_output_that_follows_the_forced_guide_becomes_the_tool_calls():
    schema = json.loads(tool_choice_guide(TOOLS, ToolChoice("required"), True).guide)
    output = '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]'
    jsonschema.validate(json.loads(output), schema)
    parser = make_tool_parser("forced", tool_names=[tool.name for tool in TOOLS], new_id=counter_ids())
    events = feed_all(parser, list(output))
    assert merge(events) == ("", "", [("get_weather", {"city": "Paris"}), ("get_time", {})])
