"""Tools, reasoning and structured outputs through the real Triton, with real clients.

Tool calls and reasoning: the scripted dev engine on the Qwen-vocabulary dev model emits a given answer with
Qwen's real `<think>` / `<tool_call>` tokens, in every upstream mode; the gateway's parsers (detected from the
chat template: qwen3 reasoning, hermes tools) must turn it into OpenAI's fields. Structured outputs: the hf dev
engine enforces guides with xgrammar, so a random model still answers with JSON that validates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ANSWER = "<think>\nLook it up.\n</think>\n\n" + CALL
MODES = ("ensemble", "tensorrt_llm_bls", "tensorrt_llm")


def scripted(text: str, question: str = "What is the weather in Paris?") -> list[dict[str, object]]:
    return [{"role": "user", "content": f"{question} <<script>>{text}<</script>>"}]


@pytest.fixture(scope="module")
def qwen_scripted() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="scripted", family="qwen", synthetic_itl_ms=1.0)) as server:
        yield server


@pytest.fixture(scope="module", params=MODES)
def qwen_gateway(
    request: pytest.FixtureRequest, qwen_scripted: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = start_gateway(qwen_scripted, tmp_path_factory.mktemp("agents"), "--triton-model", request.param)
    yield process
    stop_gateway(process)


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


def test_a_tool_call_and_its_reasoning(qwen_gateway: GatewayProcess) -> None:
    reply = sdk(qwen_gateway).chat.completions.create(
        model=qwen_gateway.model, messages=scripted(ANSWER), tools=[WEATHER], max_tokens=200
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content  # no markup leaks into the content
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert choice.message.model_extra["reasoning_content"].strip() == "Look it up."


def test_streamed_tool_calls_equal_the_non_streamed_ones(qwen_gateway: GatewayProcess) -> None:
    client = sdk(qwen_gateway)
    two_calls = ANSWER + "\n" + CALL.replace("Paris", "Rome")
    whole = client.chat.completions.create(model=qwen_gateway.model, messages=scripted(two_calls), tools=[WEATHER],
                                           max_tokens=300)  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    content, reasoning, finish = "", "", None
    for chunk in client.chat.completions.create(model=qwen_gateway.model, messages=scripted(two_calls),
                                                tools=[WEATHER], max_tokens=300, stream=True):  # fmt: skip
        for choice in chunk.choices:
            delta = choice.delta
            content += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for part in delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                if part.id:
                    assert not call["id"], "a call's id comes once, with its first delta"
                    call["id"] = part.id
                if part.function and part.function.name:
                    call["name"] = part.function.name
                if part.function and part.function.arguments:
                    call["arguments"] += part.function.arguments
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and not content.strip() and reasoning.strip() == "Look it up."
    expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.choices[0].message.tool_calls or []]
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == expected
    assert [args["city"] for _, args in expected] == ["Paris", "Rome"]


def test_a_tool_loop_with_the_sdk(qwen_gateway: GatewayProcess) -> None:
    client = sdk(qwen_gateway)
    messages = scripted(CALL)
    first = client.chat.completions.create(model=qwen_gateway.model, messages=messages, tools=[WEATHER])
    call = (first.choices[0].message.tool_calls or [])[0]
    messages = [
        *messages,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        {"role": "user", "content": "<<script>>It is sunny in Paris.<</script>>"},
    ]
    final = client.chat.completions.create(model=qwen_gateway.model, messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "It is sunny in Paris."
    assert final.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as unknown:  # a tool result for a call nobody made
        client.chat.completions.create(model=qwen_gateway.model, tools=[WEATHER], messages=[
            *scripted("x"), {"role": "tool", "tool_call_id": "call_nope", "content": "{}"}])  # fmt: skip
    assert unknown.value.body["param"] == "messages[1].tool_call_id"


def test_text_that_only_looks_like_a_call_is_content(qwen_gateway: GatewayProcess) -> None:
    text = "<tool_call>\nnot json at all\n</tool_call> and <tool_ and more"
    reply = sdk(qwen_gateway).chat.completions.create(model=qwen_gateway.model, messages=scripted(text),
                                                      tools=[WEATHER], max_tokens=100)  # fmt: skip
    assert reply.choices[0].finish_reason == "stop" and not reply.choices[0].message.tool_calls
    assert reply.choices[0].message.content == text


def test_forced_calls_need_guided_decoding(qwen_gateway: GatewayProcess) -> None:
    """The scripted engine declares no guided-decoding backend: a forced call cannot be enforced there."""
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(qwen_gateway).chat.completions.create(model=qwen_gateway.model, messages=scripted("x"), tools=[WEATHER],
                                                  tool_choice="required")  # fmt: skip
    assert refused.value.body["param"] == "tool_choice"
    assert "xgrammar_tokenizer_info_path" in refused.value.body["message"]


def test_litellm_with_tools(qwen_scripted: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    litellm = pytest.importorskip("litellm")
    gateway = start_gateway(qwen_scripted, tmp_path_factory.mktemp("agents-litellm"))
    try:
        reply = litellm.completion(model=f"openai/{gateway.model}", api_base=gateway.v1, api_key="unused",
                                   messages=scripted(CALL), tools=[WEATHER])  # fmt: skip
    finally:
        stop_gateway(gateway)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_langchain_bind_tools(qwen_gateway: GatewayProcess) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    model = chat_openai(model=qwen_gateway.model, base_url=qwen_gateway.v1, api_key="unused", max_retries=0)
    message = model.bind_tools([WEATHER]).invoke(scripted(CALL))
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Paris"}


# --- structured outputs on the hf dev engine (xgrammar enforces the guides) --------------------------------------


class Weather(BaseModel):
    city: Literal["Paris", "Rome", "Oslo"]
    sunny: bool
    degrees: int = Field(ge=0, le=40)


SAMPLED = {"temperature": 1.0, "seed": 7, "max_tokens": 400}


@pytest.mark.parametrize("which", ["gateway", "direct_gateway"])
def test_parse_returns_a_validated_object(which: str, request: pytest.FixtureRequest) -> None:
    gateway: GatewayProcess = request.getfixturevalue(which)
    messages = [{"role": "user", "content": "Weather?"}]
    completion = sdk(gateway).chat.completions.parse(
        model=gateway.model, response_format=Weather, messages=messages, **SAMPLED
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather), completion.choices[0].message.content


def test_langchain_with_structured_output(gateway: GatewayProcess) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    model = chat_openai(model=gateway.model, base_url=gateway.v1, api_key="unused", max_retries=0, **SAMPLED)
    result = model.with_structured_output(Weather, method="json_schema").invoke("Weather?")
    assert isinstance(result, Weather)


def test_json_object_and_regex_outputs_validate(gateway: GatewayProcess) -> None:
    client = sdk(gateway)
    # Any JSON lets strings run on: with this seed the random model closes them within 145 tokens.
    reply = client.chat.completions.create(
        model=gateway.model,
        messages=[{"role": "user", "content": "JSON!"}],
        response_format={"type": "json_object"},
        **SAMPLED | {"seed": 8},
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content or "", strict=False), dict | list)
    pattern = r"(yes|no)-[0-9]{3}"
    reply = client.chat.completions.create(
        model=gateway.model,
        messages=[{"role": "user", "content": "Code?"}],
        extra_body={"structured_outputs": {"regex": pattern}},
        **SAMPLED,
    )
    assert re.fullmatch(pattern, reply.choices[0].message.content or "")


def test_bad_guides_are_400s_naming_the_field(gateway: GatewayProcess) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object", "properties": 5}}}
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "x"}], "response_format": bad}
    response = httpx.post(f"{gateway.v1}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("response_format")
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "missing"}}}  # fmt: skip
    response = httpx.post(f"{gateway.v1}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tool_choice"


# --- special tokens as markers (Mistral's [TOOL_CALLS]) -----------------------------------------------------------

MISTRAL_CALL = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]'


@pytest.fixture(scope="module")
def mistral_scripted() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="scripted", family="mistral", synthetic_itl_ms=1.0)) as server:
        yield server


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
def test_mistral_tool_calls_work_in_every_mode_though_postprocessing_drops_special_tokens(
    mistral_scripted: TritonServer, tmp_path: Path, mode: str, stream: bool
) -> None:
    """The dev repository's postprocessing has skip_special_tokens=true, as NVIDIA's default: in ensemble and BLS
    mode a request with tools goes to tensorrt_llm directly and the gateway keeps [TOOL_CALLS]."""
    gateway = start_gateway(mistral_scripted, tmp_path, "--triton-model", mode)
    try:
        client = sdk(gateway)
        request = {"model": gateway.model, "messages": scripted(MISTRAL_CALL), "tools": [WEATHER], "max_tokens": 100}
        if stream:
            name, arguments, finish, content = "", "", None, ""
            for chunk in client.chat.completions.create(**request, stream=True):
                for choice in chunk.choices:
                    finish, content = choice.finish_reason or finish, content + (choice.delta.content or "")
                    for part in choice.delta.tool_calls or []:
                        name += (part.function and part.function.name) or ""
                        arguments += (part.function and part.function.arguments) or ""
        else:
            choice = client.chat.completions.create(**request).choices[0]
            finish, content = choice.finish_reason, choice.message.content
            [call] = choice.message.tool_calls or []
            name, arguments = call.function.name, call.function.arguments
        assert finish == "tool_calls" and not content
        assert name == "get_weather" and json.loads(arguments) == {"city": "Paris"}
        # Without tools, special tokens are dropped as ever (in every mode): nothing asks for them.
        plain = client.chat.completions.create(model=gateway.model, messages=scripted(MISTRAL_CALL), max_tokens=100)
        text = plain.choices[0].message.content or ""
        assert "[TOOL_CALLS]" not in text and '"get_weather"' in text
    finally:
        stop_gateway(gateway)


def test_without_an_engine_model_to_call_mistral_tools_are_a_400_that_says_what_to_change(
    mistral_scripted: TritonServer, tmp_path: Path
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(json.dumps({"models": [{"name": "trtllm-dev", "tokenizer": str(mistral_scripted.model_dir),
                      "upstreams": [mistral_scripted.grpc_url], "engine_model": "missing"}]}))  # fmt: skip
    gateway = start_gateway(None, tmp_path, models_file=models)
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk(gateway).chat.completions.create(model=gateway.model, messages=scripted(MISTRAL_CALL),
                                                 tools=[WEATHER])  # fmt: skip
        assert refused.value.body["param"] == "tools"
        assert "[TOOL_CALLS]" in refused.value.body["message"]
        assert "skip_special_tokens" in refused.value.body["message"]
        plain = sdk(gateway).chat.completions.create(model=gateway.model, messages=scripted("Hello."))
        assert plain.choices[0].message.content == "Hello."
    finally:
        stop_gateway(gateway)


# --- OpenAI's published schemas ----------------------------------------------------------------------------------


def test_tool_call_bodies_and_chunks_validate(qwen_gateway: GatewayProcess) -> None:
    from tests.e2e.test_openai_schema import post, stream, validate_all, validator

    body = {"model": qwen_gateway.model, "messages": scripted(ANSWER), "tools": [WEATHER], "max_tokens": 200}
    validator("CreateChatCompletionResponse").validate(post(qwen_gateway, "/chat/completions", body))
    chunks = stream(qwen_gateway, "/chat/completions", body | {"stream": True})
    assert any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in chunks)
    validate_all("CreateChatCompletionStreamResponse", chunks)
