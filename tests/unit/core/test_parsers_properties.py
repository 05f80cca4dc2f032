"""Property: how the text is cut into pieces never changes what a parser makes of it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.parsers import chain, make_reasoning_parser, make_tool_parser
from tests.unit.core.parser_samples import CB, CE, SAMPLES, B, E, S, counter_ids, feed_all, merge, split

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOUP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that models' outputs are made of, markup fragments included, to build adversarial texts from.
_COMMON = [" ", "\n", "text", "{", "}", "[", "]", '"', '"name": "a"', '"arguments": {}', ", ", ":", ";", "\\"]
FRAGMENTS = {
    "hermes": [*_COMMON, "<tool_call>", "</tool_call>", "<tool", "_call>", "<", '{"name": "f", "arguments": {"x": 1}}'],
    "llama3_json": [*_COMMON, "<|python_tag|>", "<|python", '{"name": "f", "parameters": {"x": [1]}}'],
    "mistral": [*_COMMON, "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "f", "[TOOL", '[{"name": "f", "arguments": {}}]'],
    "deepseek_v3": [*_COMMON, CB, CE, B, E, S, "function", "```json\n", "```", "<｜tool", '{"x": 1}'],
    "pythonic": [*_COMMON, "f(", "x=1", ")", "'", "<|python_start|>", "<|python_end|>", "[f(x='a')]"],
    "forced": [*_COMMON, '{"name": "f", "arguments": {"x": 1}}', "[", "]"],
}
REASONING_FRAGMENTS = [
    " ",
    "\n",
    "text",
    "<think>",
    "</think>",
    "<thi",
    "nk>",
    "</",
    "<tool_call>",
    "</tool_call>",
    '{"name": "f", "arguments": {}}',
]


def _cuts(text_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, list[int]]]:
    return text_strategy.flatmap(lambda t: st.tuples(st.just(t), st.lists(st.integers(0, len(t)), max_size=15)))


@pytest.mark.parametrize("parser", sorted(SAMPLES))
@PROPERTY
@given(data=st.data())
def test_any_split_of_a_sample_gives_its_content_and_calls(parser, data):
    text, content, calls = data.draw(st.sampled_from(SAMPLES[parser]))
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=15))
    events = feed_all(make_tool_parser(parser, new_id=counter_ids()), split(text, cuts))
    assert merge(events) == (content, "", calls)


@pytest.mark.parametrize("parser", sorted(FRAGMENTS))
@SOUP
@given(data=st.data())
def test_any_split_of_any_text_gives_what_the_whole_text_gives(parser, data):
    text, cuts = data.draw(_cuts(st.lists(st.sampled_from(FRAGMENTS[parser]), max_size=25).map("".join)))
    whole = merge(feed_all(make_tool_parser(parser, new_id=counter_ids()), [text]))
    pieces = merge(feed_all(make_tool_parser(parser, new_id=counter_ids()), split(text, cuts)))
    assert pieces == whole


@pytest.mark.parametrize("parser", sorted(FRAGMENTS))
@PROPERTY
@given(text=st.text(max_size=60))
def test_text_with_no_call_is_all_content(parser, text):
    tool_parser = make_tool_parser(parser)
    content, _, calls = merge(feed_all(tool_parser, list(text)))
    if not calls:
        assert content == text or content == text.lstrip()  # leading whitespace before nothing: kept or dropped
    assert tool_parser.has_tool_calls == bool(calls)


@pytest.mark.parametrize("name", ["deepseek_r1", "qwen3"])
@PROPERTY
@given(data=st.data())
def test_reasoning_then_tools_is_the_same_for_any_split(name, data):
    text, cuts = data.draw(_cuts(st.lists(st.sampled_from(REASONING_FRAGMENTS), max_size=25).map("".join)))

    def run(pieces: list[str]) -> tuple[str, str, list[object]]:
        parser = chain(make_reasoning_parser(name), make_tool_parser("hermes", new_id=counter_ids()))
        return merge(feed_all(parser, pieces))

    assert run(split(text, cuts)) == run([text])
