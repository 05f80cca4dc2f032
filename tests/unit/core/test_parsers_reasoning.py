"""Reasoning parsers, their composition with tool parsers, and parser detection from chat templates."""

from __future__ import annotations

import pytest

from gateway.core.events import ReasoningEvent, TextEvent, TokenLogprob, ToolCallEvent
from gateway.core.parsers import (
    Chain,
    DetectedParsers,
    ParserProcessor,
    chain,
    choice_parser,
    detect_parsers,
    make_reasoning_parser,
    make_tool_parser,
    prompt_opens_reasoning,
)
from gateway.core.request import ToolChoice, ToolSpec
from gateway.errors import ConfigurationError, UnsupportedFeatureError
from tests.unit.core.parser_samples import counter_ids, feed_all, merge

REASONING_CASES = [
    # parser, start_in_reasoning (None: the parser's default), output, content, reasoning
    ("deepseek_r1", None, "Let me think.</think>\n\nThe answer is 4.", "The answer is 4.", "Let me think."),
    ("deepseek_r1", None, "<think>\nHmm.\n</think>Four.", "Four.", "\nHmm.\n"),
    ("deepseek_r1", None, "thinking and never stopping", "", "thinking and never stopping"),
    ("deepseek_r1", False, "Plain answer, thinking off.", "Plain answer, thinking off.", ""),
    ("qwen3", None, "<think>\nhmm\n</think>\n\nHi", "Hi", "\nhmm\n"),
    ("qwen3", None, "Hi there, no thinking.", "Hi there, no thinking.", ""),
    ("qwen3", None, "<thinking> is not the tag", "<thinking> is not the tag", ""),
    ("qwen3", None, "  <think></think>Empty reasoning.", "Empty reasoning.", ""),
    ("qwen3", True, "from the prompt</think>answer", "answer", "from the prompt"),
    ("qwen3", None, "<think>cut off by max_tokens </thi", "", "cut off by max_tokens </thi"),
    ("qwen3", None, "a </think> late in content stays content", "a </think> late in content stays content", ""),
]


@pytest.mark.parametrize(("name", "start", "text", "content", "reasoning"), REASONING_CASES)
@pytest.mark.parametrize("step", [0, 1, 4])
def test_reasoning_is_split_from_content_whole_and_in_pieces(name, start, text, content, reasoning, step):
    parser = make_reasoning_parser(name, start_in_reasoning=start)
    pieces = [text[i : i + step] for i in range(0, len(text), step)] if step else [text]
    assert merge(feed_all(parser, pieces)) == (content, reasoning, [])


def test_reasoning_is_released_as_it_arrives_holding_only_a_partial_end_tag():
    parser = make_reasoning_parser("deepseek_r1")
    assert parser.feed("step one </th") == [ReasoningEvent("step one ")]
    assert parser.feed("ink>\nanswer") == [TextEvent("answer")]
    assert parser.feed(" more") == [TextEvent(" more")]


def test_unknown_reasoning_parser_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="unknown reasoning parser"):
        make_reasoning_parser("o1")


@pytest.mark.parametrize(
    ("prompt", "opens"),
    [
        ("<|im_start|>assistant\n<think>\n", True),
        ("<｜Assistant｜><think>", True),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
        ("<|im_start|>assistant\n", False),
    ],
)
def test_prompt_opens_reasoning_reads_the_generation_prompt(prompt, opens):
    assert prompt_opens_reasoning(prompt) is opens


def test_reasoning_then_tool_calls_in_one_answer():
    parser = chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes", new_id=counter_ids()))
    text = (
        '<think>\nI could write <tool_call>{"name": "x", "arguments": {}}</tool_call> here.\n</think>\n\n'
        'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    for pieces in ([text], list(text)):
        content, reasoning, calls = merge(feed_all(parser, pieces))
        assert content == "Checking.\n"
        assert reasoning == '\nI could write <tool_call>{"name": "x", "arguments": {}}</tool_call> here.\n'
        assert calls == [("get_weather", {"city": "Paris"})]
        assert parser.has_tool_calls
        parser = chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes", new_id=counter_ids()))


def test_json_answer_after_reasoning_is_content_not_reasoning():
    parser = chain(make_reasoning_parser("deepseek_r1"), make_tool_parser("deepseek_v3"))
    assert merge(feed_all(parser, list('Plan.</think>{"answer": 42}'))) == ('{"answer": 42}', "Plan.", [])
    assert not parser.has_tool_calls


def test_held_text_of_the_first_stage_reaches_the_next_one_at_finish():
    parser = Chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes"))
    assert parser.feed("<thi") == []
    assert merge(parser.finish()) == ("<thi", "", [])


def test_a_chain_of_one_is_the_stage_itself_and_an_empty_chain_is_refused():
    stage = make_tool_parser("hermes")
    assert chain(stage) is stage
    with pytest.raises(ValueError):
        Chain()


QWEN_LIKE = """{%- for m in messages %}<|im_start|>{{ m.role }}
{%- if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}
{%- endif %}{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>
{%- endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"""
DEEPSEEK_LIKE = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}<｜User｜>{{ m.content }}{% else %}<｜Assistant｜>"
    "{% if m.tool_calls %}<｜tool▁calls▁begin｜>{% endif %}{{ m.content }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)
MISTRAL_LIKE = "{% for m in messages %}[INST]{{ m.content }}[/INST]{% if m.tool_calls %}[TOOL_CALLS]{% endif %}"
LLAMA3_LIKE = "<|start_header_id|>assistant<|end_header_id|>{% if builtin_tools %}<|python_tag|>{% endif %}"


@pytest.mark.parametrize(
    ("template", "detected"),
    [
        (QWEN_LIKE, DetectedParsers("hermes", "qwen3")),
        (DEEPSEEK_LIKE, DetectedParsers("deepseek_v3", "deepseek_r1")),
        (MISTRAL_LIKE, DetectedParsers("mistral", None)),
        (LLAMA3_LIKE, DetectedParsers("llama3_json", None)),
        ("<|header_start|>assistant<|header_end|><|python_start|>", DetectedParsers("pythonic", None)),
        ("Call tools as [func_name1(params_name1=params_value1)]", DetectedParsers("pythonic", None)),
        ("{{ messages[0].content }}", DetectedParsers(None, None)),
        ("<tool_call> and [TOOL_CALLS] in one template", DetectedParsers(None, None)),
        ("<think> in an unknown family", DetectedParsers(None, None)),
    ],
)
def test_parsers_are_detected_from_the_chat_template_only_when_unambiguous(template, detected):
    assert detect_parsers(template) == detected


def _logprob(token: str) -> TokenLogprob:
    return TokenLogprob(token, token.encode(), -0.5)


def test_as_a_processor_text_keeps_its_logprobs_and_calls_drop_theirs():
    processor = ParserProcessor(make_tool_parser("hermes", new_id=counter_ids()))
    assert not processor.ended
    lp = [_logprob("Hi")]
    assert processor.feed([TextEvent("Hi", lp), ReasoningEvent("r")]) == [TextEvent("Hi", lp), ReasoningEvent("r")]
    partial = [_logprob(" <"), _logprob("tool")]
    assert processor.feed([TextEvent(" <tool", partial)]) == [TextEvent(" ", partial)]  # what came in goes out
    events = processor.feed([TextEvent('_call>{"name": "a", "arguments": {}}</tool_call>', [_logprob("x")])])
    assert [type(e) for e in events] == [ToolCallEvent, ToolCallEvent]
    assert processor.feed([TextEvent("<", [_logprob("<")])]) == []
    assert processor.finish() == [TextEvent("<", [_logprob("<")])]
    assert processor.has_tool_calls


WEATHER_TOOLS = [ToolSpec("get_weather", {"type": "object", "properties": {}})]
QWEN_CALL = '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'


def _choice(**overrides):
    settings = {
        "tool_parser": "hermes",
        "reasoning_parser": "qwen3",
        "tools": WEATHER_TOOLS,
        "tool_choice": ToolChoice("auto"),
        "guided": False,
        "prompt": "<|im_start|>assistant\n",
        "new_id": counter_ids(),
    }
    return choice_parser(**(settings | overrides))


def test_choice_parser_reads_reasoning_then_the_models_tool_calls():
    parser = _choice(prompt="<|im_start|>assistant\n<think>\n")
    assert merge(feed_all(parser, ["hmm</think>", QWEN_CALL])) == ("", "hmm", [("get_weather", {})])


def test_choice_parser_under_a_guide_has_no_reasoning_stage():
    parser = _choice(guided=True, tool_choice=ToolChoice("none"), prompt="<think>\n")
    assert parser is None
    forced = _choice(guided=True, tool_choice=ToolChoice("required"), prompt="<think>\n")
    events = feed_all(forced, ['[{"name": "get_weather", "arguments": {}}]'])
    assert merge(events) == ("", "", [("get_weather", {})])


def test_choice_parser_forced_calls_need_no_tool_parser_and_keep_the_models_id_style():
    parser = _choice(tool_parser=None, reasoning_parser=None, tool_choice=ToolChoice("function", "get_weather"))
    assert merge(feed_all(parser, ['[{"name": "get_weather", "arguments": {}}]']))[2] == [("get_weather", {})]
    mistral = _choice(tool_parser="mistral", new_id=None, guided=True, tool_choice=ToolChoice("required"))
    events = feed_all(mistral, ['[{"name": "get_weather", "arguments": {}}]'])
    assert len(events[0].id) == 9


def test_choice_parser_without_tools_or_with_tool_choice_none_leaves_markup_as_content():
    assert _choice(tools=[], reasoning_parser=None) is None
    assert _choice(tool_choice=ToolChoice("none"), reasoning_parser=None) is None


def test_choice_parser_refuses_callable_tools_when_the_model_has_no_tool_parser():
    with pytest.raises(UnsupportedFeatureError) as info:
        _choice(tool_parser=None)
    assert info.value.param == "tools"
