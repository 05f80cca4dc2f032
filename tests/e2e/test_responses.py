"""POST /v1/responses through the real Triton with the unmodified `openai` SDK, every object and event checked
against OpenAI's published schema.

The scripted dev engine on the Qwen-vocabulary dev model answers what the prompt's `<<script>>` says, with Qwen's
real `<think>` / `<tool_call>` tokens, so reasoning and tool calls come through the real parsers; the `hf` engine
enforces `text.format` guides with xgrammar, so `responses.parse` gets JSON that validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_openai_schema import validate_all, validator

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}  # fmt: skip
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
THINK = "<think>\nLook it up.\n</think>\n\n"


def script(text: str, question: str = "What is the weather in Paris?") -> str:
    return f"{question} <<script>>{text}<</script>>"


@pytest.fixture(scope="module")
def qwen_scripted() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="scripted", family="qwen", synthetic_itl_ms=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def scripted_gateway(qwen_scripted: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(
        qwen_scripted, tmp_path_factory.mktemp("responses"), "--state-key", "e2e-state-key-0123456789"
    )
    yield process
    stop_gateway(process)


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)


def raw_events(gateway: GatewayProcess, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of a streamed response, its `event:` line checked against its `type`."""
    with httpx.stream("POST", f"{gateway.v1}/responses", json={"model": gateway.model, "stream": True, **body},
                      timeout=120) as response:  # fmt: skip
        assert response.status_code == 200, response.read().decode()
        raw = response.read().decode()
    events = []
    for block in filter(None, raw.split("\n\n")):
        if block.startswith(":"):
            continue  # a keep-alive comment
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def test_create_returns_a_response_object(scripted_gateway: GatewayProcess) -> None:
    client = sdk(scripted_gateway)
    response = client.responses.create(model=scripted_gateway.model, input=script("It is sunny."),
                                       instructions="Answer briefly.", metadata={"run": "e2e"})  # fmt: skip
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "It is sunny." and response.output[0].type == "message"
    assert response.instructions == "Answer briefly." and response.metadata == {"run": "e2e"}
    assert response.usage is not None and response.usage.output_tokens > 0 and response.usage.input_tokens > 0


def test_create_streamed_and_the_stream_helper(scripted_gateway: GatewayProcess) -> None:
    client = sdk(scripted_gateway)
    events = list(client.responses.create(model=scripted_gateway.model, input=script("Sunny and warm."), stream=True))
    assert [event.type for event in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Sunny and warm."
    text = ""
    with client.responses.stream(model=scripted_gateway.model, input=script("Sunny and warm.")) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert text == final.output_text == "Sunny and warm."


def test_a_tool_loop_with_reasoning_kept_sealed(scripted_gateway: GatewayProcess) -> None:
    """As a `store: false` client runs it: the reasoning comes back sealed, and the next turn sends it back."""
    client = sdk(scripted_gateway)
    first = client.responses.create(model=scripted_gateway.model, input=script(THINK + CALL), tools=[WEATHER],
                                    store=False, include=["reasoning.encrypted_content"])  # fmt: skip
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text.strip() == "Look it up."
    assert reasoning.encrypted_content and "Look" not in reasoning.encrypted_content
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    history: list[Any] = [{"role": "user", "content": script(THINK + CALL)}, *first.output,
                          {"type": "function_call_output", "call_id": call.call_id,
                           "output": script("It is sunny in Paris.", "")}]  # fmt: skip
    second = client.responses.create(model=scripted_gateway.model, input=history, tools=[WEATHER], store=False)
    assert second.output_text == "It is sunny in Paris." and second.status == "completed"
    tampered = {"type": "reasoning", "summary": [], "encrypted_content": reasoning.encrypted_content[:-6] + "AAAAAA"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=scripted_gateway.model, input=[tampered, *history[1:]], tools=[WEATHER])
    assert refused.value.body["param"] == "input[0].encrypted_content"


def test_tool_and_reasoning_events_validate(scripted_gateway: GatewayProcess) -> None:
    body = {
        "input": script(THINK + "Checking. " + CALL),
        "tools": [WEATHER],
        "include": ["reasoning.encrypted_content"],
    }
    events = raw_events(scripted_gateway, body)
    validate_all("ResponseStreamEvent", events)
    for event in events:
        name = {"response.output_text.delta": "ResponseTextDeltaEvent",
                "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
                "response.reasoning_text.delta": "ResponseReasoningTextDeltaEvent"}.get(event["type"])  # fmt: skip
        if name is not None:
            validator(name).validate(event)
    items = [event["item"]["type"] for event in events if event["type"] == "response.output_item.done"]
    assert items == ["reasoning", "message", "function_call"]
    final = events[-1]["response"]
    validator("Response").validate(final)
    whole = httpx.post(f"{scripted_gateway.v1}/responses", json={"model": scripted_gateway.model, **body}, timeout=120)
    validator("Response").validate(whole.json())
    assert [item["type"] for item in whole.json()["output"]] == items


def test_unsupported_tools_and_orphan_outputs_are_400s(scripted_gateway: GatewayProcess) -> None:
    client = sdk(scripted_gateway)
    with pytest.raises(openai.BadRequestError) as web:
        client.responses.create(model=scripted_gateway.model, input="x", tools=[WEATHER, {"type": "web_search"}])
    assert web.value.body["param"] == "tools[1].type"
    orphan = [{"role": "user", "content": "x"}, {"type": "function_call_output", "call_id": "call_nope", "output": "1"}]
    with pytest.raises(openai.BadRequestError) as unanswered:
        client.responses.create(model=scripted_gateway.model, input=orphan)  # type: ignore[arg-type]
    assert unanswered.value.body["param"] == "input[1].call_id"
    with pytest.raises(openai.BadRequestError) as stateful:
        client.responses.create(model=scripted_gateway.model, input="x", previous_response_id="resp_123")
    assert stateful.value.body["param"] == "previous_response_id"


def test_input_tokens_counts_the_prompt_of_the_request(scripted_gateway: GatewayProcess) -> None:
    client = sdk(scripted_gateway)
    question = script("Sunny.")
    counted = client.responses.input_tokens.count(model=scripted_gateway.model, input=question, tools=[WEATHER])
    created = client.responses.create(model=scripted_gateway.model, input=question, tools=[WEATHER])
    assert counted.object == "response.input_tokens"
    assert created.usage is not None and counted.input_tokens == created.usage.input_tokens
    validator("TokenCountsResource").validate(counted.model_dump())


# --- structured output on the hf engine (xgrammar enforces the guide) ---------------------------------------------


class Weather(BaseModel):
    city: Literal["Paris", "Rome", "Oslo"]
    sunny: bool
    degrees: int = Field(ge=0, le=40)


def test_parse_returns_a_validated_object(gateway: GatewayProcess) -> None:
    parsed = sdk(gateway).responses.parse(model=gateway.model, input="Weather?", text_format=Weather, temperature=0,
                                          max_output_tokens=200)  # fmt: skip
    assert parsed.status == "completed", parsed.output
    assert isinstance(parsed.output_parsed, Weather)
