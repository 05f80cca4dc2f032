"""Chat and completions answers, byte for byte: bodies, SSE streams, errors and what reached the engine.

`golden_openai.json` was recorded by main's code before gateway/openai/ became core/ + protocols/ (f957b53, and
again on 4d5163a after the merge of issue 30, this file's imports pointed at gateway/openai/): the split must not
change a byte of what clients see or of what the engine is asked. Ids, timestamps and random tool-call ids are
normalised; everything else is compared exactly. To record again after an intended change:
`GOLDEN_RECORD=1 pytest tests/unit/protocols/test_golden_openai.py`, and review the diff of the JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.devstack
from gateway.app import create_app
from gateway.config import Settings
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import UpstreamRejectedError, UpstreamUnavailableError
from tests.unit.fake_engine import FakeEngine

GOLDEN = Path(__file__).with_name("golden_openai.json")
QWEN_TEMPLATE = Path(gateway.devstack.__file__).parent / "templates" / "qwen.jinja"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
M = DEV_MODEL_NAME

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"parameters": {"type": "object"}, "name": "clock"}}
HISTORY = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny", "name": "get_weather"},
    {"role": "user", "content": "Thanks", "name": "ann"},
]
CALL_TEXT = ["Let me check.", "<tool_call>", '{"name": "get_weather", ', '"arguments": {"city": "Paris"}}']
CALL_TEXT.append("</tool_call>")
FORCED = ['[{"name": "get_weather", ', '"arguments": {"city": "Paris"}}]']
THINKING = ["<think>", "Paris is ", "in France", "</think>", "It is ", "sunny."]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": M, "messages": [{"role": "user", "content": "Hi"}], **extra}


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": M, "prompt": "Once upon", **extra}


# name -> (path, body, setup): setup keys are FakeEngine fields, plus "model" ("plain" or "qwen": the qwen template
# with the hermes tool parser and the qwen3 reasoning parser) and "max_prompt_tokens".
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "chat": (CHAT, chat(), {}),
    "chat_stream_usage": (CHAT, chat(stream=True, stream_options={"include_usage": True}), {}),
    "chat_stream": (CHAT, chat(stream=True), {}),
    "chat_length": (CHAT, chat(max_tokens=2), {}),
    "chat_stop": (CHAT, chat(stop=["ld!"]), {"pieces": ["Hello", " wor", "ld", "!"]}),
    "chat_stop_stream": (CHAT, chat(stop="ld!", stream=True), {"pieces": ["Hello", " wor", "ld", "!"]}),
    "chat_sampling": (
        CHAT,
        chat(
            temperature=0,
            max_completion_tokens=5,
            top_k=3,
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=0.1,
            repetition_penalty=1.1,
            min_tokens=1,
            ignore_eos=True,
            user="u1",
        ),
        {},
    ),
    "chat_top_p": (CHAT, chat(temperature=0.7, top_p=0.9), {}),
    "chat_n_sequences": (CHAT, chat(n=2, seed=5), {}),
    "chat_n_sequences_stream": (CHAT, chat(n=2, seed=5, stream=True, stream_options={"include_usage": True}), {}),
    "chat_n_calls": (CHAT, chat(n=2, seed=5), {"capable": {"return_sequences": False, "logprobs": True}}),
    "chat_n_calls_stream": (CHAT, chat(n=2, seed=5, stream=True), {"capable": {"logprobs": True}}),
    "chat_logprobs": (CHAT, chat(logprobs=True), {}),
    "chat_logprobs_stream": (CHAT, chat(logprobs=True, stream=True), {}),
    "chat_logprobs_stop_stream": (CHAT, chat(logprobs=True, stream=True, stop=[" wor"]), {}),
    "chat_tokenizer_counts": (CHAT, chat(), {"count_tokens": False}),
    "chat_history": (CHAT, chat(messages=HISTORY, tools=[WEATHER, CLOCK]), {"model": "qwen"}),
    "chat_history_plain": (CHAT, chat(messages=HISTORY), {}),
    "chat_tool_call": (CHAT, chat(tools=[WEATHER]), {"model": "qwen", "pieces": CALL_TEXT}),
    "chat_tool_call_stream": (CHAT, chat(tools=[WEATHER], stream=True), {"model": "qwen", "pieces": CALL_TEXT}),
    "chat_tool_choice_none": (CHAT, chat(tools=[WEATHER], tool_choice="none"), {"model": "qwen", "pieces": CALL_TEXT}),
    "chat_tool_required": (
        CHAT,
        chat(tools=[WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False),
        {"model": "qwen", "pieces": FORCED, "capable": {"guided_decoding": True}},
    ),
    "chat_tool_named_stream": (
        CHAT,
        chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True),
        {"model": "qwen", "pieces": FORCED, "capable": {"guided_decoding": True}},
    ),
    "chat_reasoning": (CHAT, chat(), {"model": "qwen", "pieces": THINKING}),
    "chat_reasoning_stream": (CHAT, chat(stream=True), {"model": "qwen", "pieces": THINKING}),
    "chat_json_schema": (
        CHAT,
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": WEATHER["function"]["parameters"], "strict": True},
            }
        ),
        {"capable": {"guided_decoding": True}, "pieces": ['{"city": ', '"Paris"}']},
    ),
    "chat_json_object": (CHAT, chat(response_format={"type": "json_object"}), {"capable": {"guided_decoding": True}}),
    "chat_response_format_text": (CHAT, chat(response_format={"type": "text"}), {}),
    "chat_structured_regex": (
        CHAT,
        chat(structured_outputs={"regex": "[a-z]+"}),
        {"capable": {"guided_decoding": True}},
    ),
    "chat_guided_choice": (CHAT, chat(guided_choice=["yes", 'no "way"']), {"capable": {"guided_decoding": True}}),
    "chat_guided_grammar": (CHAT, chat(guided_grammar='root ::= "a" | "b"'), {"capable": {"guided_decoding": True}}),
    "chat_guided_json_text": (CHAT, chat(guided_json='{"type": "object"}'), {"capable": {"guided_decoding": True}}),
    "chat_auto_tools_leave_guide": (
        CHAT,
        chat(tools=[WEATHER], response_format={"type": "json_object"}),
        {"model": "qwen", "capable": {"guided_decoding": True}},
    ),
    # errors
    "err_tool_schema": (
        CHAT,
        chat(tools=[WEATHER, {"type": "function", "function": {"name": "x", "parameters": {"type": "nope"}}}]),
        {"model": "qwen"},
    ),
    "err_tool_parameters_type": (
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "x", "parameters": 3}}]),
        {"model": "qwen"},
    ),
    "err_tool_type": (CHAT, chat(tools=[{"type": "web"}]), {"model": "qwen"}),
    "err_tools_not_list": (CHAT, chat(tools={"a": 1}), {"model": "qwen"}),
    "err_tool_name": (CHAT, chat(tools=[{"type": "function", "function": {"name": "a b"}}]), {"model": "qwen"}),
    "err_tool_duplicate": (CHAT, chat(tools=[WEATHER, WEATHER]), {"model": "qwen"}),
    "err_tool_description": (
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "a", "description": 1}}]),
        {"model": "qwen"},
    ),
    "err_tool_choice_unknown": (
        CHAT,
        chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
        {"model": "qwen"},
    ),
    "err_tool_choice_shape": (CHAT, chat(tools=[WEATHER], tool_choice="always"), {"model": "qwen"}),
    "err_tool_required_no_tools": (CHAT, chat(tool_choice="required"), {"model": "qwen"}),
    "err_tool_call_id_unanswered": (
        CHAT,
        chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "1"}]),
        {"model": "qwen"},
    ),
    "err_tool_call_id_missing": (
        CHAT,
        chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "1"}]),
        {"model": "qwen"},
    ),
    "err_tool_call_arguments": (
        CHAT,
        chat(
            messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]
        ),
        {"model": "qwen"},
    ),
    "err_tool_call_function": (
        CHAT,
        chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}]),
        {"model": "qwen"},
    ),
    "err_tools_without_parser": (CHAT, chat(tools=[WEATHER]), {}),
    "err_response_format_type": (CHAT, chat(response_format={"type": "yaml"}), {"capable": {"guided_decoding": True}}),
    "err_response_format_name": (
        CHAT,
        chat(response_format={"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
        {"capable": {"guided_decoding": True}},
    ),
    "err_response_format_schema": (
        CHAT,
        chat(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 5}}}),
        {"capable": {"guided_decoding": True}},
    ),
    "err_two_guides": (
        CHAT,
        chat(response_format={"type": "json_object"}, guided_regex="a+"),
        {"capable": {"guided_decoding": True}},
    ),
    "err_structured_two": (
        CHAT,
        chat(structured_outputs={"regex": "a", "choice": ["b"]}),
        {"capable": {"guided_decoding": True}},
    ),
    "err_bad_regex": (CHAT, chat(guided_regex="(a"), {"capable": {"guided_decoding": True}}),
    "err_guide_unenforced": (CHAT, chat(response_format={"type": "json_object"}), {}),
    "err_tool_required_unenforced": (CHAT, chat(tools=[WEATHER], tool_choice="required"), {"model": "qwen"}),
    "err_max_tokens": (CHAT, chat(max_tokens=5000), {}),
    "err_max_completion_tokens": (CHAT, chat(max_completion_tokens=5000), {}),
    "err_n": (CHAT, chat(n=9), {}),
    "err_top_logprobs_alone": (CHAT, chat(top_logprobs=2), {}),
    "err_top_logprobs_capability": (CHAT, chat(logprobs=True, top_logprobs=2), {}),
    "err_logprobs_capability": (CHAT, chat(logprobs=True), {"capable": {}}),
    "err_image": (CHAT, chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), {}),
    "err_reasoning_effort": (CHAT, chat(reasoning_effort="low"), {}),
    "err_functions": (CHAT, chat(functions=[{"name": "f"}]), {}),
    "err_best_of": (CHAT, chat(best_of=3), {}),
    "err_stream_options": (CHAT, chat(stream_options={"include_usage": True}), {}),
    "err_modalities": (CHAT, chat(modalities=["text", "audio"]), {}),
    "err_prompt_too_long": (CHAT, chat(messages=[{"role": "user", "content": "a " * 50}]), {"max_prompt_tokens": 10}),
    "err_not_ready": (CHAT, chat(), {"ready": False}),
    "err_unknown_model": (CHAT, chat(model="nope"), {}),
    "err_upstream_unavailable_stream": (CHAT, chat(stream=True), {"fail_with": "unavailable"}),
    "err_upstream_rejected": (CHAT, chat(), {"fail_with": "rejected"}),
    "err_after_start_stream": (CHAT, chat(stream=True), {"fail_with": "unavailable", "fail_after": 2}),
    "err_after_start_completion_stream": (
        COMPLETIONS,
        completion(stream=True),
        {"fail_with": "unavailable", "fail_after": 1},
    ),
    # completions
    "completion": (COMPLETIONS, completion(), {}),
    "completion_stream": (COMPLETIONS, completion(stream=True, stream_options={"include_usage": True}), {}),
    "completion_prompts_n": (COMPLETIONS, completion(prompt=["A", "B"], n=2, seed=1), {}),
    "completion_prompts_n_stream": (COMPLETIONS, completion(prompt=["A", "B"], n=2, seed=1, stream=True), {}),
    "completion_prompts_calls": (
        COMPLETIONS,
        completion(prompt=["A", "B"], n=2, seed=1),
        {"capable": {"return_sequences": False}},
    ),
    "completion_echo": (COMPLETIONS, completion(echo=True, max_tokens=2), {}),
    "completion_echo_stream": (COMPLETIONS, completion(echo=True, stream=True), {}),
    "completion_logprobs": (COMPLETIONS, completion(logprobs=0), {}),
    "completion_logprobs_stream": (COMPLETIONS, completion(logprobs=0, stream=True), {}),
    "completion_logprobs_false": (COMPLETIONS, completion(logprobs=False), {}),
    "completion_stop": (COMPLETIONS, completion(stop=["wor"]), {}),
    "completion_tokenizer_counts": (COMPLETIONS, completion(), {"count_tokens": False}),
    "err_completion_top": (COMPLETIONS, completion(logprobs=3), {}),
    "err_completion_echo_logprobs": (COMPLETIONS, completion(logprobs=0, echo=True), {}),
    "err_completion_suffix": (COMPLETIONS, completion(suffix="x"), {}),
    "err_completion_max_tokens": (COMPLETIONS, completion(max_tokens=5000), {}),
    "err_completion_prompt_too_long": (COMPLETIONS, completion(prompt=["a", "word " * 50]), {"max_prompt_tokens": 10}),
}

FAILURES = {"unavailable": UpstreamUnavailableError("Triton went away"), "rejected": UpstreamRejectedError("bad")}
NORMALISE = [
    (re.compile(r"(chatcmpl|cmpl)-golden-[0-9a-f]{8}"), r"\1-golden-ID"),
    (re.compile(r'"created":\s?\d+'), '"created":0'),
    (re.compile(r"call_[0-9a-f]{24}"), "call_ID"),
]


def normalise(text: str) -> str:
    for pattern, replacement in NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def engine_for(setup: dict[str, Any]) -> FakeEngine:
    engine = FakeEngine()
    for key in ("pieces", "count_tokens", "ready", "fail_after"):
        if key in setup:
            setattr(engine, key, setup[key])
    if "capable" in setup:
        engine.capable = EngineCapabilities("fake", **{"return_sequences": True, **setup["capable"]})
    if "fail_with" in setup:
        engine.fail_with = FAILURES[setup["fail_with"]]
    return engine


def served_model(setup: dict[str, Any], engine: FakeEngine, tokenizer: Any) -> ServedModel:
    qwen = setup.get("model") == "qwen"
    return ServedModel(
        name=M,
        engine=engine,
        chat_template=ChatTemplate(tokenizer, QWEN_TEMPLATE if qwen else None),
        counter=TokenCounter(tokenizer),
        default_max_tokens=16,
        max_tokens_limit=1000,
        max_prompt_tokens=setup.get("max_prompt_tokens"),
        tool_parser="hermes" if qwen else None,
        reasoning_parser="qwen3" if qwen else None,
    )


async def answer(name: str, tokenizer: Any) -> dict[str, Any]:
    """What the client got for one case, and what the engine was asked."""
    path, body, setup = CASES[name]
    engine = engine_for(setup)
    app = create_app(ModelRegistry([served_model(setup, engine, tokenizer)]), Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        response = await http.post(path, json=body, headers={"x-request-id": "golden"})
    requests = [dataclasses.asdict(request) for request in engine.requests]
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "body": normalise(response.text),
        "engine": json.loads(normalise(json.dumps(requests, default=list))),
    }


@pytest.mark.skipif(bool(os.environ.get("GOLDEN_RECORD")), reason="recording")
@pytest.mark.parametrize("name", sorted(CASES))
async def test_answers_are_byte_identical_to_the_recording(name: str, tokenizer: Any) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert name in golden, f"no recording for {name}: record with GOLDEN_RECORD=1"
    assert await answer(name, tokenizer) == golden[name]


@pytest.mark.skipif(not os.environ.get("GOLDEN_RECORD"), reason="GOLDEN_RECORD=1 records the answers")
async def test_record(tokenizer: Any) -> None:
    recorded = {name: await answer(name, tokenizer) for name in sorted(CASES)}
    GOLDEN.write_text(json.dumps(recorded, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
