"""JSON guides without free whitespace: compact EBNF from xgrammar, in a form the engine's xgrammar reads."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gateway.openai.compact_json import compact_json_grammar, portable_ebnf
from gateway.openai.guide_checker import GuideChecker
from gateway.openai.guide_worker import xgrammar
from gateway.openai.guides import Guide, plan_guide, without_free_whitespace
from gateway.openai.tools import ToolChoice
from tests.unit.test_guides import SCHEMA, TOOLS, _accepts

pytestmark = pytest.mark.skipif(xgrammar() is None, reason="xgrammar is not installed")

WEATHER_FORMAT = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}


@pytest.fixture(scope="module")
def checker() -> Iterator[GuideChecker]:
    """The worker that builds compact grammars, as a model's checker does."""
    checker = GuideChecker()
    yield checker
    checker.close()


async def compact(guide: Guide | None, checker: GuideChecker) -> Guide | None:
    return await without_free_whitespace(guide, checker)


async def test_a_json_schema_guide_becomes_ebnf_that_takes_compact_json_only(checker: GuideChecker) -> None:
    guide = await compact(plan_guide(response_format=WEATHER_FORMAT).guide, checker)
    assert guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '{"city":"Paris"}')
    for spaced in ('{"city": "Paris"}', '{ "city":"Paris"}', '{"city":"Paris"}\n', '\n{"city":"Paris"}'):
        assert not _accepts(guide, spaced), spaced
    assert not _accepts(guide, '{"town":"Paris"}')  # still the schema
    engine_default = plan_guide(response_format=WEATHER_FORMAT).guide
    assert engine_default is not None and engine_default.type == "json_schema"
    assert _accepts(engine_default, '{ "city" :\n\t"Paris" }')


async def test_json_object_becomes_any_compact_object(checker: GuideChecker) -> None:
    guide = await compact(plan_guide(response_format={"type": "json_object"}).guide, checker)
    assert guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '{"a":[1,{"b":null}],"c":"d e"}') and _accepts(guide, "{}")
    assert not _accepts(guide, '{"a": 1}') and not _accepts(guide, "[1]")  # an object, as json_object promises


async def test_a_forced_call_guide_is_compact_and_the_forced_parser_still_reads_it(checker: GuideChecker) -> None:
    tool_choice = ToolChoice("function", "get_weather")
    plan = plan_guide(tools=TOOLS, tool_choice=tool_choice)
    guide = await compact(plan.guide, checker)
    assert plan.forced_tool_calls and guide is not None and guide.type == "ebnf_grammar"
    assert _accepts(guide, '[{"name":"get_weather","arguments":{"city":"Rome"}}]')
    assert not _accepts(guide, '[\n {"name":"get_weather","arguments":{"city":"Rome"}}]')


@pytest.mark.parametrize(
    "guide", [Guide("regex", "[0-9]+"), Guide("ebnf_grammar", 'root ::= "a"'), Guide("structural_tag", "{}")]
)
async def test_guides_that_are_not_json_pass_unchanged(guide: Guide, checker: GuideChecker) -> None:
    assert await compact(guide, checker) is guide


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


async def test_a_schema_whose_grammar_needs_a_built_in_function_stays_a_json_schema_guide(
    checker: GuideChecker,
) -> None:
    assert portable_ebnf('root ::= Regex("[a-z]+", json_string=true) "x(" [a(]') is None
    assert portable_ebnf('root ::= "Regex(" [a(]') == 'root ::= "Regex(" [a(]'
    pattern = json.dumps({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z]{2}$"}}})
    assert await compact(Guide("json_schema", pattern), checker) == Guide("json_schema", pattern)


async def test_a_schema_xgrammar_cannot_build_stays_a_json_schema_guide(checker: GuideChecker) -> None:
    assert compact_json_grammar('{"type": "object", "properties": 7}', xgrammar()) is None
    guide = Guide("json_schema", '{"type": "object", "properties": 7}')
    assert await compact(guide, checker) is guide
