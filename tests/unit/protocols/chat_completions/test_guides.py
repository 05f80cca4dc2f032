"""Chat's output constraints: response_format, structured_outputs and guided_* read, and enforced as guides."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.core.guide_checker import default_guide_checker
from gateway.core.guide_worker import xgrammar
from gateway.core.guides import JSON_OBJECT, Guide, constraint_guide
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.chat_completions.guides import (
    legacy_constraint,
    output_constraint,
    response_format_constraint,
    structured_outputs_constraint,
)

needs_xgrammar = pytest.mark.skipif(xgrammar() is None, reason="xgrammar is not installed")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _error(call, *args, **kwargs) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        call(*args, **kwargs)
    return info.value


def _guide(read, *args: Any) -> Guide | None:
    """The guide the core makes of what a field asks for (None: no constraint), once the checks it leaves for the
    GuideChecker (meta-schema, regex, xgrammar) have run, as plan_agent runs them."""
    constraint = read(*args)
    if constraint is None:
        return None
    guide = constraint_guide(constraint)
    if guide.check is not None:
        asyncio.run(default_guide_checker().run([guide.check]))
    return guide


def response_format_guide(response_format: Any) -> Guide | None:
    return _guide(response_format_constraint, response_format)


def structured_outputs_guide(structured_outputs: Any) -> Guide | None:
    return _guide(structured_outputs_constraint, structured_outputs)


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
        structured_outputs_constraint({"structural_tag": {"structures": []}})
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
    assert _guide(legacy_constraint, field, value) == guide
    assert _guide(lambda: output_constraint(None, None, **{field: value})) == guide


def test_two_content_guides_at_once_are_a_400_naming_the_second():
    error = _error(output_constraint, {"type": "json_object"}, None, guided_regex="a+")
    assert error.param == "guided_regex"


def test_the_constraint_names_the_field_that_asked_and_the_param_that_holds_it():
    constraint = output_constraint(None, {"regex": "[0-9]+"})
    assert (constraint.kind, constraint.value) == ("regex", "[0-9]+")
    assert (constraint.field, constraint.param) == ("structured_outputs", "structured_outputs.regex")
