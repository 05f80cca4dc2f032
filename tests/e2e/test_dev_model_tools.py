"""The embedded default model (`trtllm-gateway dev`'s trtllm-dev) takes tools like a real model: its chat template
writes hermes-style calls, so the gateway detects the hermes parser and a newcomer's first `tool_choice: auto`
request works."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from gateway.devstack import DevStackOptions, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_agents import WEATHER, scripted

pytestmark = pytest.mark.e2e

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


def test_a_first_tool_request_with_auto_is_answered(gateway: GatewayProcess) -> None:
    """The hf dev model (what `trtllm-gateway dev` serves): tools with `auto` are accepted, the answer is text."""
    reply = sdk(gateway).chat.completions.create(
        model=gateway.model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="auto",
        max_tokens=16,
        seed=1,
    )
    # A random model rarely writes a call: the answer is text, and the request is not refused.
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.fixture(scope="module")
def scripted_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The default dev model on the scripted engine: it says what the prompt scripts, in the dev tokenizer's tokens."""
    with dev_triton(DevStackOptions(engine="scripted", synthetic_itl_ms=1.0)) as server:
        process = start_gateway(server, tmp_path_factory.mktemp("dev-tools"))
        yield process
        stop_gateway(process)


@pytest.mark.parametrize("stream", [False, True])
def test_the_dev_model_calls_a_tool_and_takes_the_result_back(scripted_dev: GatewayProcess, stream: bool) -> None:
    client = sdk(scripted_dev)
    messages = scripted(CALL)
    if stream:
        name, arguments, finish, call_id = "", "", None, ""
        for chunk in client.chat.completions.create(model=scripted_dev.model, messages=messages, tools=[WEATHER],
                                                    stream=True):  # fmt: skip
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                assert not choice.delta.content
                for part in choice.delta.tool_calls or []:
                    call_id += part.id or ""
                    name += (part.function and part.function.name) or ""
                    arguments += (part.function and part.function.arguments) or ""
    else:
        first = client.chat.completions.create(model=scripted_dev.model, messages=messages, tools=[WEATHER])
        choice = first.choices[0]
        finish, [call] = choice.finish_reason, choice.message.tool_calls or []
        assert not choice.message.content
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert finish == "tool_calls" and name == "get_weather" and json.loads(arguments) == {"city": "Paris"}
    history = [
        *messages,
        {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function",
                                              "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "sunny"}'},
        {"role": "user", "content": "<<script>>Sunny in Paris.<</script>>"},
    ]  # fmt: skip
    final = client.chat.completions.create(model=scripted_dev.model, messages=history, tools=[WEATHER])
    assert final.choices[0].message.content == "Sunny in Paris." and final.choices[0].finish_reason == "stop"
