"""JSON guides without free whitespace: compact EBNF from xgrammar, in a form the engine's xgrammar reads."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.core.compact_json import compact_json_grammar, portable_ebnf
from gateway.core.guide_checker import default_guide_checker
from gateway.core.guide_worker import xgrammar
from gateway.core.guides import Guide, without_free_whitespace
from gateway.core.request import OutputConstraint, ToolChoice, ToolOptions
from tests.unit.core.test_guides import SCHEMA, TOOLS, _accepts, _agent

pytestmark = pytest.mark.skipif(xgrammar() is None, reason="xgrammar is not installed")

WEATHER_FORMAT = OutputConstraint("json_schema", SCHEMA, "response_format.json_schema.schema", "response_format")
JSON_OBJECT_FORMAT = OutputConstraint("json_object", field="response_format")


def guide_of(
    constraint: OutputConstraint | None, tools: ToolOptions | None = None, compact: bool = True
) -> Guide | None:
    """The guide a conversation gets from the core for a model whose JSON guides are compact or not."""
    return _agent(tools or ToolOptions(), constraint, compact_json=compact).guide


def compact(guide: Guide) -> Guide:
    """The guide as a model with compact JSON guides sends it (built in the default checker's worker)."""
    return asyncio.run(without_free_whitespace(guide, default_guide_checker()))


def test_a_json_schema_guide_becomes_ebnf_that_takes_compact_json_only() -> None:
    guide = guide_of(WEATHER_FORMAT)
    assert guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '{"city":"Paris"}')
    for spaced in ('{"city": "Paris"}', '{ "city":"Paris"}', '{"city":"Paris"}\n', '\n{"city":"Paris"}'):
        assert not _accepts(guide, spaced), spaced
    assert not _accepts(guide, '{"town":"Paris"}')  # still the schema
    engine_default = guide_of(WEATHER_FORMAT, compact=False)
    assert engine_default is not None and engine_default.type == "json_schema"
    assert _accepts(engine_default, '{ "city" :\n\t"Paris" }')


def test_json_object_becomes_any_compact_object() -> None:
    guide = guide_of(JSON_OBJECT_FORMAT)
    assert guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '{"a":[1,{"b":null}],"c":"d e"}') and _accepts(guide, "{}")
    assert not _accepts(guide, '{"a": 1}') and not _accepts(guide, "[1]")  # an object, as json_object promises


def test_a_forced_call_guide_is_compact_and_the_forced_parser_still_reads_it() -> None:
    guide = guide_of(None, ToolOptions(TOOLS, ToolChoice("function", "get_weather")))
    assert guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '[{"name":"get_weather","arguments":{"city":"Rome"}}]')
    assert not _accepts(guide, '[\n {"name":"get_weather","arguments":{"city":"Rome"}}]')


@pytest.mark.parametrize(
    "guide", [Guide("regex", "[0-9]+"), Guide("ebnf_grammar", 'root ::= "a"'), Guide("structural_tag", "{}")]
)
def test_guides_that_are_not_json_pass_unchanged(guide: Guide) -> None:
    assert compact(guide) is guide


def test_unbounded_repetitions_are_written_so_that_older_xgrammar_reads_them() -> None:
    ebnf = 'a ::= b{0, -1} "{0, -1}" [{0, -1}\\]] c{1, -1} d{2, 3}'
    assert portable_ebnf(ebnf) == 'a ::= b{0,} "{0, -1}" [{0, -1}\\]] c{1,} d{2, 3}'
    numbers = {"type": "array", "items": {"type": "number"}}
    text = {"type": "string", "maxLength": 4, "enum": ["{0, -1}", "ok"]}
    schema = {"type": "object", "properties": {"xs": numbers, "s": text}}
    grammar = compact_json_grammar(json.dumps(schema), xgrammar())
    assert grammar is not None and ", -1}" not in grammar.replace('"{0, -1}', "")
    guide = Guide("ebnf_grammar", grammar)
    assert _accepts(guide, '{"xs":[1,2.5e3],"s":"{0, -1}"}') and not _accepts(guide, '{"xs":[1, 2]}')


def test_a_schema_whose_grammar_needs_a_built_in_function_stays_a_json_schema_guide() -> None:
    assert portable_ebnf('root ::= Regex("[a-z]+", json_string=true) "x(" [a(]') is None
    assert portable_ebnf('root ::= "Regex(" [a(]') == 'root ::= "Regex(" [a(]'
    pattern = json.dumps({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z]{2}$"}}})
    assert compact(Guide("json_schema", pattern)) == Guide("json_schema", pattern)


def test_a_schema_xgrammar_cannot_build_stays_a_json_schema_guide() -> None:
    assert compact_json_grammar('{"type": "object", "properties": 7}', xgrammar()) is None
    guide = Guide("json_schema", '{"type": "object", "properties": 7}')
    assert compact(guide) is guide
