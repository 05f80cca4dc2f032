"""Tool-call parsers: each format, content around calls, malformed calls, hold-back, ids, logging."""

from __future__ import annotations

import json
import logging
import re

import pytest

from gateway.core import parsers
from gateway.core.events import TextEvent, ToolCallEvent
from gateway.core.parsers import TOOL_PARSERS, make_tool_parser
from gateway.errors import ConfigurationError
from tests.unit.core.parser_samples import SAMPLES, counter_ids, feed_all, merge

CASES = [(name, *sample) for name, samples in SAMPLES.items() for sample in samples]


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES)
@pytest.mark.parametrize("step", [0, 1, 3])
def test_sample_gives_its_content_and_calls_whole_and_in_small_pieces(parser, text, content, calls, step):
    pieces = [text[i : i + step] for i in range(0, len(text), step)] if step else [text]
    events = feed_all(make_tool_parser(parser, new_id=counter_ids()), pieces)
    assert merge(events) == (content, "", calls)


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES)
def test_has_tool_calls_says_whether_a_call_was_emitted(parser, text, content, calls):
    tool_parser = make_tool_parser(parser)
    feed_all(tool_parser, [text])
    assert tool_parser.has_tool_calls == bool(calls)


def test_the_package_exports_what_it_lists():
    assert all(hasattr(parsers, name) for name in parsers.__all__)
    assert {"make_tool_parser", "make_reasoning_parser", "chain", "ParserProcessor"} <= set(parsers.__all__)


def test_every_format_is_registered_by_name():
    assert set(TOOL_PARSERS) == {"hermes", "llama3_json", "mistral", "deepseek_v3", "pythonic", "forced"}
    with pytest.raises(ConfigurationError, match="unknown tool parser 'nope'"):
        make_tool_parser("nope")


def test_a_partial_start_marker_is_held_only_until_it_cannot_be_one():
    parser = make_tool_parser("hermes")
    assert parser.feed("a <tool") == [TextEvent("a ")]
    assert parser.feed("s") == [TextEvent("<tools")]
    assert parser.feed(" <") == [TextEvent(" ")]
    assert parser.finish() == [TextEvent("<")]


@pytest.mark.parametrize("parser", ["hermes", "mistral", "deepseek_v3", "llama3_json", "pythonic"])
def test_text_without_markup_passes_through_piece_by_piece(parser):
    tool_parser = make_tool_parser(parser)
    tool_parser.feed("Hello")  # decides the start for the formats that look at it
    for piece in [" there", ", how", " are", " you?", "\n", "1 < 2"]:
        assert tool_parser.feed(piece) == [TextEvent(piece)]
    assert tool_parser.finish() == []


def test_a_call_is_emitted_when_its_end_marker_arrives_not_at_finish():
    parser = make_tool_parser("hermes", new_id=counter_ids())
    assert parser.feed('<tool_call>{"name": "a", "arguments": {"x": 1}}') == []
    assert parser.feed("</tool_call>") == [
        ToolCallEvent(call_index=0, id="call_0", name="a", arguments=""),
        ToolCallEvent(call_index=0, id=None, name=None, arguments='{"x": 1}'),
    ]
    assert parser.finish() == []


def test_deepseek_emits_each_call_before_the_block_ends():
    parser = make_tool_parser("deepseek_v3", new_id=counter_ids())
    events = parser.feed("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>a<｜tool▁sep｜>{}<｜tool▁call▁end｜>")
    assert [e.name for e in events] == ["a", None]


def test_forced_calls_stream_call_by_call():
    parser = make_tool_parser("forced", new_id=counter_ids())
    assert [e.name for e in parser.feed('[{"name": "a", "arguments": {}}, {"name"')] == ["a", None]
    assert [e.call_index for e in parser.feed(': "b", "arguments": {}}]')] == [1, 1]
    assert parser.finish() == []


def test_a_raw_control_character_in_a_guided_argument_still_makes_a_call_with_valid_json_arguments():
    """xgrammar's string rule lets a guided model write U+0004 and the like unescaped (seen on the hf dev model)."""
    parser = make_tool_parser("forced", tool_names={"get_weather"}, new_id=counter_ids())
    events = parser.feed('[{"name":"get_weather","arguments":{"city":"} error\x04人"}}]') + parser.finish()
    assert [e.name for e in events] == ["get_weather", None]
    assert json.loads(events[1].arguments) == {"city": "} error\x04人"}


def test_a_forced_call_cut_short_is_a_call_only_when_its_name_was_written_in_full_and_offered():
    cut = '[{"name": "get_weather", "arguments": {"city": "Pa'
    parser = make_tool_parser("forced", tool_names={"get_weather"}, new_id=counter_ids())
    assert parser.feed(cut) == []
    assert parser.finish() == [
        ToolCallEvent(call_index=0, id="call_0", name="get_weather", arguments=""),
        ToolCallEvent(call_index=0, id=None, name=None, arguments='{"city": "Pa'),
    ]
    assert parser.has_tool_calls
    for text in ['[{"name": "rm_rf", "arguments": {"x"', '[{"name": "get_wea', "[", ""]:
        assert merge(feed_all(make_tool_parser("forced", tool_names={"get_weather"}), [text])) == (text, "", [])


def test_content_comes_before_the_call_it_precedes():
    events = feed_all(make_tool_parser("mistral"), ['Sure.[TOOL_CALLS]a[ARGS]{"x": 1} Done.'])
    assert [type(e).__name__ for e in events] == ["TextEvent", "ToolCallEvent", "ToolCallEvent", "TextEvent"]


def test_a_function_the_request_does_not_offer_is_content(caplog):
    text = '<tool_call>{"name": "rm_rf", "arguments": {"path": "/secret"}}</tool_call>'
    parser = make_tool_parser("hermes", tool_names={"get_weather"})
    with caplog.at_level(logging.WARNING, logger="gateway.core.parsers"):
        events = feed_all(parser, [text])
    assert merge(events) == (text, "", [])
    assert not parser.has_tool_calls
    assert "hermes" in caplog.text and "does not offer" in caplog.text
    assert "secret" not in caplog.text and "rm_rf" not in caplog.text


@pytest.mark.parametrize(("parser", "text"), [(p, t) for p, t, _, calls in CASES if not calls and "<" in t])
def test_a_rejected_call_logs_the_parser_and_a_reason_but_never_the_text(parser, text, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway.core.parsers"):
        feed_all(make_tool_parser(parser), [text])
    for record in caplog.records:
        assert record.getMessage().startswith(f"tool parser {parser}: ")
        assert text not in record.getMessage()


def test_default_ids_are_openai_style_and_mistral_ids_are_nine_alphanumerics():
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>'
    ids = [e.id for e in feed_all(make_tool_parser("hermes"), [text]) if e.id]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids)
    events = feed_all(make_tool_parser("mistral"), ["[TOOL_CALLS]a[ARGS]{}"])
    assert re.fullmatch(r"[A-Za-z0-9]{9}", events[0].id)


def test_arguments_are_exactly_one_json_object_even_when_the_model_sent_a_json_string():
    events = feed_all(make_tool_parser("hermes"), ['<tool_call>{"name": "a", "arguments": "{\\"q\\": \\"é\\"}"}'])
    assert events[1].arguments == '{"q": "é"}'


def test_hermes_arguments_that_are_a_string_but_not_an_object_are_content():
    text = '<tool_call>{"name": "a", "arguments": "not json"}</tool_call>'
    assert merge(feed_all(make_tool_parser("hermes"), [text])) == (text, "", [])


def test_mistral_list_with_one_bad_call_is_all_content():
    text = '[TOOL_CALLS][{"name": "a", "arguments": {}}, {"arguments": {}}]'
    assert merge(feed_all(make_tool_parser("mistral"), [text])) == (text, "", [])


def test_pythonic_unknown_function_rejects_the_whole_list():
    text = '[get_weather(city="Paris"), drop_tables(all=True)]'
    assert merge(feed_all(make_tool_parser("pythonic", tool_names={"get_weather"}), [text])) == (text, "", [])


def test_llama3_bare_json_is_only_a_call_at_the_start():
    text = 'Here: {"name": "a", "parameters": {}}'
    assert merge(feed_all(make_tool_parser("llama3_json"), [text])) == (text, "", [])


def test_markers_that_are_special_tokens_are_reported_as_lost_to_skip_special_tokens():
    mistral_specials = {"<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"}
    assert parsers.markers_lost_to(mistral_specials, "mistral", None) == ["[TOOL_CALLS]"]
    assert parsers.markers_lost_to({"<|eot_id|>", "<|python_tag|>"}, "llama3_json", "qwen3") == ["<|python_tag|>"]
    assert parsers.markers_lost_to({"<|im_end|>"}, "hermes", "qwen3") == []
    assert parsers.markers_lost_to({"</think>"}, None, "deepseek_r1") == ["</think>"]


def test_a_start_marker_not_followed_by_a_call_is_released_at_once():
    parser = make_tool_parser("hermes")
    assert merge(parser.feed("Use <tool_call> t")) == ("Use <tool_call> t", "", [])
    parser = make_tool_parser("mistral")
    assert merge(parser.feed("[TOOL_CALLS] is a")) == ("[TOOL_CALLS] is a", "", [])
    parser = make_tool_parser("mistral")
    assert parser.feed("[TOOL_CALLS]get_weather[AR") == []  # could still be a call
