"""JSON guides without free whitespace, through the real Triton (hf dev engine, xgrammar enforcing the guide).

The random dev model fills whatever whitespace a grammar allows. With the engine's JSON grammar (free whitespace,
`--guided-json-whitespace any`) a `json_schema` answer at the default `max_tokens` often never ends; with the
compact EBNF the gateway sends by default it ends in most seeds. The figures go to the README.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from gateway.devstack import TritonServer
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_agents import WEATHER

pytestmark = pytest.mark.e2e

SEEDS = range(20)


class Item(BaseModel):
    sku: Literal["apple", "pear", "fig"]
    quantity: int = Field(ge=1, le=9)


class Order(BaseModel):
    customer: str = Field(max_length=16)
    items: list[Item] = Field(min_length=1, max_length=3)
    paid: bool
    priority: Literal["low", "high"]


ORDER_FORMAT = {"type": "json_schema", "json_schema": {"name": "order", "schema": Order.model_json_schema()}}
MESSAGES = [{"role": "user", "content": "Reply with a JSON order."}]


@pytest.fixture(scope="module")
def any_whitespace_gateway(
    hf_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The gateway sending the engine's own JSON guides (free whitespace)."""
    process = start_gateway(hf_triton, tmp_path_factory.mktemp("any-ws"), "--guided-json-whitespace", "any")
    yield process
    stop_gateway(process)


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)


def ended_orders(gateway: GatewayProcess) -> tuple[int, list[int]]:
    """In how many of the 20 seeds a valid Order ended within the default max_tokens (256); the token counts."""
    ended, tokens = 0, []
    for seed in SEEDS:
        reply = sdk(gateway).chat.completions.create(
            model=gateway.model, messages=MESSAGES, response_format=ORDER_FORMAT, seed=seed
        )
        choice = reply.choices[0]
        assert reply.usage is not None
        tokens.append(reply.usage.completion_tokens)
        if choice.finish_reason == "stop":
            # What ended is a valid object (xgrammar's bounded strings let raw control characters in: strict=False).
            Order.model_validate(json.loads(choice.message.content or "", strict=False))
            ended += 1
    return ended, sorted(tokens)


def test_guided_json_ends_within_the_default_max_tokens_in_most_seeds(
    gateway: GatewayProcess, any_whitespace_gateway: GatewayProcess
) -> None:
    compact, compact_tokens = ended_orders(gateway)
    engine_default, default_tokens = ended_orders(any_whitespace_gateway)
    print(f"\nvalid Order within max_tokens 256, 20 seeds: compact {compact} ({compact_tokens[0]}-{compact_tokens[-1]} "
          f"tokens), any whitespace {engine_default} ({default_tokens[0]}-{default_tokens[-1]} tokens)")  # fmt: skip
    assert compact >= 16 and compact >= engine_default
    assert statistics.median(compact_tokens) * 2 < statistics.median(default_tokens)


def test_compact_json_has_no_whitespace_between_tokens(gateway: GatewayProcess) -> None:
    reply = sdk(gateway).chat.completions.create(
        model=gateway.model, messages=MESSAGES, response_format={"type": "json_object"}, seed=1, max_tokens=24
    )
    text = reply.choices[0].message.content or ""
    assert text.startswith("{") and not text[1:2].isspace()
    outside_strings = "".join(part for index, part in enumerate(text.split('"')) if index % 2 == 0)
    assert not any(char.isspace() for char in outside_strings), text


# --- a forced call cut by max_tokens: a tool call with finish_reason length, as OpenAI returns it ---------------

FORCED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_call_cut_by_max_tokens_is_a_call_with_the_sdk(gateway: GatewayProcess, stream: bool) -> None:
    client = sdk(gateway)
    request = {"model": gateway.model, "messages": MESSAGES, "tools": [WEATHER], "tool_choice": FORCED,
               "max_tokens": 20, "seed": 3}  # fmt: skip
    if stream:
        finish, name, arguments, content = None, "", "", ""
        for chunk in client.chat.completions.create(**request, stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                content += choice.delta.content or ""
                for part in choice.delta.tool_calls or []:
                    name += (part.function and part.function.name) or ""
                    arguments += (part.function and part.function.arguments) or ""
    else:
        choice = client.chat.completions.create(**request).choices[0]
        finish, content = choice.finish_reason, choice.message.content or ""
        [call] = choice.message.tool_calls or []
        name, arguments = call.function.name, call.function.arguments
    assert finish == "length" and not content
    assert name == "get_weather"
    assert arguments.startswith('{"')  # as far as it got: the call was cut inside its arguments
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)


def test_langchain_sees_the_cut_call_and_the_length_finish(gateway: GatewayProcess) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    model = chat_openai(model=gateway.model, base_url=gateway.v1, api_key="unused", max_retries=0, max_tokens=20,
                        seed=3)  # fmt: skip
    message = model.bind_tools([WEATHER], tool_choice="get_weather").invoke(MESSAGES)
    assert message.response_metadata["finish_reason"] == "length"
    # The arguments are cut, so LangChain reports the call as invalid instead of "no tool call".
    [call] = message.invalid_tool_calls
    assert call["name"] == "get_weather" and call["args"].startswith('{"')
    assert not message.tool_calls and not message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["args"])
