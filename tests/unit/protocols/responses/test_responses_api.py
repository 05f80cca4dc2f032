"""POST /v1/responses through the app over a scripted engine: objects and events in OpenAI's shape, items opened
and closed in order, tool calls and reasoning, sealed reasoning across turns, failures, and the 400s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.devstack
from gateway.app import create_app, guide_limits
from gateway.config import Settings
from gateway.core.guide_checker import GuideChecker
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.errors import UpstreamUnavailableError
from gateway.telemetry import current_request
from tests.unit.fake_engine import FakeEngine

QWEN = Path(gateway.devstack.__file__).parent / "templates" / "qwen.jinja"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object",
           "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip


@pytest.fixture(scope="module")
async def checker() -> AsyncIterator[GuideChecker]:
    """One warmed-up guide checker for the module (its worker's xgrammar import takes seconds on a busy machine)."""
    guide_checker = GuideChecker(guide_limits(Settings(guide_check_timeout_s=60)), 1)
    await guide_checker.warm_up()
    yield guide_checker
    guide_checker.close()


@pytest.fixture
async def served(
    tokenizer: Any, checker: GuideChecker, session_store: tuple[Any, Any]
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeEngine]]:
    """The app with one model whose template renders reasoning, with hermes tool and qwen3 reasoning parsers."""
    engine = FakeEngine()
    model = ServedModel(
        DEV_MODEL_NAME, engine, ChatTemplate(tokenizer, QWEN), TokenCounter(tokenizer), 16, 1000, 4000,
        tool_parser="hermes", reasoning_parser="qwen3", guide_checker=checker,
    )  # fmt: skip
    app = create_app(ModelRegistry([model]), Settings(state_key="unit-test-state-key-0123456789"))
    app.state.store, app.state.background = session_store  # what the lifespan would open
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client, engine


async def create(client: httpx.AsyncClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, "input": "Hi"} | body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def events(client: httpx.AsyncClient, **body: Any) -> list[dict[str, Any]]:
    """The stream's events, each checked: its `event:` line is its type."""
    response = await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, "input": "Hi", "stream": True} | body)
    assert response.status_code == 200, response.text
    assert "[DONE]" not in response.text
    parsed = []
    for block in filter(None, response.text.split("\n\n")):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        parsed.append(event)
    assert [event["sequence_number"] for event in parsed] == list(range(len(parsed)))
    return parsed


def without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in ("id", "call_id", "created_at", "completed_at")}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


async def test_a_response_has_openais_shape_and_echoes_the_request(
    served: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = served
    body = await create(client, instructions="Be brief.", temperature=0.5, metadata={"k": "v"}, user="u1")
    assert body["id"].startswith("resp_") and body["id"] == engine.requests[0].request_id
    assert (body["object"], body["status"], body["error"], body["incomplete_details"]) == ("response", "completed",
                                                                                          None, None)  # fmt: skip
    [message] = body["output"]
    assert message["id"].startswith("msg_") and message["status"] == "completed" and message["role"] == "assistant"
    assert message["content"] == [{"type": "output_text", "text": "Hello world!", "annotations": [], "logprobs": []}]
    assert body["usage"] == {
        "input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10,
    }  # fmt: skip
    echoed = {key: body[key] for key in ("instructions", "temperature", "top_p", "metadata", "user", "tool_choice",
                                         "tools", "text", "truncation", "store", "max_output_tokens")}  # fmt: skip
    assert echoed == {"instructions": "Be brief.", "temperature": 0.5, "top_p": 1.0, "metadata": {"k": "v"},
                      "user": "u1", "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"},
                      "verbosity": "medium"}, "truncation": "disabled", "store": True,
                      "max_output_tokens": None}  # fmt: skip
    assert "Be brief." in engine.requests[0].prompt and engine.requests[0].sampling.temperature == 0.5


async def test_a_stream_opens_and_closes_its_items_in_order(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, _ = served
    stream = await events(client)
    assert [event["type"] for event in stream] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert stream[0]["response"]["status"] == "in_progress" and stream[0]["response"]["output"] == []
    assert all(event["logprobs"] == [] for event in stream if event["type"] == "response.output_text.delta")
    assert "".join(e["delta"] for e in stream if e["type"] == "response.output_text.delta") == "Hello world!"
    final = stream[-1]["response"]
    assert final["output"] == [stream[-2]["item"]]
    assert without_ids(final) == without_ids(await create(client))


async def test_max_output_tokens_makes_an_incomplete_response(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, _ = served
    body = await create(client, max_output_tokens=2)
    assert (body["status"], body["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert body["output"][0]["status"] == "incomplete" and body["max_output_tokens"] == 2
    stream = await events(client, max_output_tokens=2)
    assert stream[-1]["type"] == "response.incomplete" and stream[-2]["item"]["status"] == "incomplete"


async def test_function_calls_streamed_and_whole(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, engine = served
    engine.pieces = ["Let me check. ", CALL[:30], CALL[30:]]
    body = await create(client, tools=[WEATHER])
    message, call = body["output"]
    assert message["content"][0]["text"] == "Let me check. "
    assert call["type"] == "function_call" and call["id"].startswith("fc_") and call["call_id"].startswith("call_")
    assert (call["name"], json.loads(call["arguments"]), call["status"]) == ("get_weather", {"city": "Paris"},
                                                                            "completed")  # fmt: skip
    assert body["tools"] == [WEATHER | {"description": None, "strict": None}]
    stream = await events(client, tools=[WEATHER])
    kinds = [event["type"] for event in stream]
    added = kinds.index("response.output_item.added", kinds.index("response.output_item.done"))
    assert stream[added]["item"]["type"] == "function_call" and stream[added]["output_index"] == 1
    arguments = "".join(e["delta"] for e in stream if e["type"] == "response.function_call_arguments.delta")
    done = next(e for e in stream if e["type"] == "response.function_call_arguments.done")
    assert arguments == done["arguments"] and json.loads(arguments) == {"city": "Paris"}
    assert done["name"] == "get_weather"
    assert without_ids(stream[-1]["response"]["output"]) == without_ids(body["output"])


async def test_reasoning_is_an_item_and_comes_back_sealed_across_turns(
    served: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = served
    engine.pieces = ["<think>", "Paris is in France.", "</think>", "It is sunny."]
    include = ["reasoning.encrypted_content"]
    body = await create(client, include=include, store=False)
    reasoning, message = body["output"]
    assert reasoning["id"].startswith("rs_") and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Paris is in France."}]
    assert "Paris" not in reasoning["encrypted_content"]
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    stream = await events(client, include=include)
    kinds = [event["type"] for event in stream]
    assert kinds[2:7] == ["response.output_item.added", "response.content_part.added",
                          "response.reasoning_text.delta", "response.reasoning_text.done",
                          "response.content_part.done"]  # fmt: skip
    # The next turn gives back only the sealed blob (as a store: false client does): the template gets the text.
    sealed = {"type": "reasoning", "summary": [], "encrypted_content": reasoning["encrypted_content"]}
    replay = [{"role": "user", "content": "Weather?"}, sealed, message, {"role": "user", "content": "And now?"}]
    await create(client, input=replay, store=False)
    assert "<think>\nParis is in France.\n</think>" in engine.requests[-1].prompt
    sealed["encrypted_content"] = reasoning["encrypted_content"][:-4] + "AAAA"
    refused = await create(client, 400, input=replay)
    assert refused["error"]["param"] == "input[1].encrypted_content"


async def test_a_codex_style_tool_loop_replays_turn_after_turn(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    """Codex resends the whole history each turn, its own items without id and status, with store false."""
    client, engine = served
    engine.pieces = [CALL]
    history: list[dict[str, Any]] = [{"type": "message", "role": "user",
                                      "content": [{"type": "input_text", "text": "Weather?"}]}]  # fmt: skip
    for turn in range(3):
        body = await create(client, input=history, tools=[WEATHER], store=False, instructions="You are Codex.")
        [call] = [item for item in body["output"] if item["type"] == "function_call"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": f"sunny {turn}"}
        history += [{key: call[key] for key in ("type", "name", "arguments", "call_id")}, output]
        prompt = engine.requests[-1].prompt
        assert prompt.count("<tool_response>") == turn and prompt.startswith("<|im_start|>system\nYou are Codex.")
    assert "sunny 2" not in engine.requests[-1].prompt
    engine.pieces = ["Done."]
    final = await create(client, input=history, tools=[WEATHER], store=False)
    assert final["output"][0]["content"][0]["text"] == "Done." and "sunny 2" in engine.requests[-1].prompt


async def test_logprobs_when_included(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, engine = served
    body = await create(client, include=["message.output_text.logprobs"])
    part = body["output"][0]["content"][0]
    assert part["logprobs"][0] == {"token": "Hello", "logprob": -0.5, "bytes": list(b"Hello"), "top_logprobs": []}
    stream = await events(client, include=["message.output_text.logprobs"])
    deltas = [e for e in stream if e["type"] == "response.output_text.delta"]
    assert deltas[0]["logprobs"] == [{"token": "Hello", "logprob": -0.5, "top_logprobs": []}]
    assert engine.requests[-1].logprobs


async def test_a_failure_after_the_start_closes_the_item_then_reports(
    served: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = served
    engine.fail_with, engine.fail_after = UpstreamUnavailableError("upstream gone"), 1
    stream = await events(client)
    assert [event["type"] for event in stream][-5:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "error",
        "response.failed",
    ]  # fmt: skip
    assert stream[-3]["item"]["status"] == "incomplete"
    assert stream[-2] | {"sequence_number": 0} == {"type": "error", "code": "upstream_unavailable",
                                                   "message": "upstream gone", "param": None,
                                                   "sequence_number": 0}  # fmt: skip
    failed = stream[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "upstream gone"}
    engine.fail_after = 0  # before any output: the HTTP status says it
    response = await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, "input": "Hi", "stream": True})
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "{}"}]}, "input[0].call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input[0].content[0].type"),
        ({"text": {"format": {"type": "json_schema", "name": "A", "schema": {"type": "object"}}}}, "text.format"),
        ({"tool_choice": "required", "tools": [WEATHER]}, "tool_choice"),
        ({"include": ["everything"]}, "include[0]"),
        ({"max_output_tokens": 5000}, "max_output_tokens"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"reasoning": {"effort": "enormous"}}, "reasoning.effort"),
        ({"metadata": {"k": 1}}, "metadata.k"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    served: tuple[httpx.AsyncClient, FakeEngine], body: dict[str, Any], param: str
) -> None:
    client, engine = served
    refused = await create(client, 400, **body)
    assert refused["error"]["param"] == param, refused
    assert not engine.requests


async def test_truncation_auto_drops_the_oldest_items_and_disabled_refuses(
    served: tuple[httpx.AsyncClient, FakeEngine],
) -> None:
    client, engine = served
    served_model(client).max_prompt_tokens = 700
    filler = " ".join(f"word{i}" for i in range(100))
    items = [{"role": "user", "content": f"first {filler}"}, {"role": "assistant", "content": f"second {filler}"},
             {"role": "user", "content": "LAST"}]  # fmt: skip
    refused = await create(client, 400, input=items)
    assert (refused["error"]["param"], refused["error"]["code"]) == ("input", "context_length_exceeded")
    body = await create(client, input=items, truncation="auto")
    assert body["truncation"] == "auto"
    prompt = engine.requests[-1].prompt
    assert "first word0" not in prompt and "second word0" in prompt and "LAST" in prompt
    counted = await client.post("/v1/responses/input_tokens", json={"model": DEV_MODEL_NAME, "input": items,
                                                                     "truncation": "auto"})  # fmt: skip
    assert counted.json()["input_tokens"] == served_model(client).counter.count(prompt)


def served_model(client: httpx.AsyncClient) -> ServedModel:
    app = client._transport.app  # type: ignore[attr-defined]
    model: ServedModel = app.state.registry.all()[0]
    return model


async def test_input_tokens_counts_the_rendered_prompt(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, engine = served
    request = {"input": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER], "instructions": "Hi"}
    counted = await client.post("/v1/responses/input_tokens", json=request)  # the model is optional with one served
    assert counted.status_code == 200, counted.text
    await create(client, **request)
    tokens = served_model(client).counter.count(engine.requests[-1].prompt)
    assert counted.json() == {"object": "response.input_tokens", "input_tokens": tokens}
    orphan = {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}
    refused = await client.post("/v1/responses/input_tokens", json=orphan)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input[0].call_id"


CODEX_TURN3 = Path(__file__).parent / "codex_exec_turn3.json"


async def test_codex_exec_third_turn_as_recorded(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    """The request Codex CLI 0.171 sent on its third turn (recorded through a proxy; its own instructions left out):
    developer messages, items without status, reasoning with content and a sealed blob, exec_command calls and
    their outputs, store false. The blobs are sealed again with this app's key (they were another gateway's)."""
    client, engine = served
    app = client._transport.app  # type: ignore[attr-defined]
    recorded = json.loads(CODEX_TURN3.read_text())
    for item in recorded["input"]:
        if item["type"] == "reasoning":
            item["encrypted_content"] = app.state.sealer.seal(
                "sealed " + item["content"][0]["text"], b"responses.reasoning"
            )
    engine.pieces = ["The checks passed: 42."]
    response = await client.post("/v1/responses", json=recorded)
    assert response.status_code == 200, response.text
    prompt = engine.requests[-1].prompt
    # two model turns (reasoning and a call each) and their results, then the generation prompt
    assert prompt.count("<|im_start|>assistant") == 3 and prompt.count("<tool_response>") == 2
    assert "sealed \nStep one." in prompt and "sealed \nStep two." in prompt  # the blob, not the plain content
    assert engine.requests[-1].request_id.startswith("resp_")
    names = [block.split("\n")[0] for block in response.text.split("\n\n") if block]
    assert names[-1] == "event: response.completed"


async def test_prompt_cache_key_routes_as_a_session_unless_the_header_names_one(
    served: tuple[httpx.AsyncClient, FakeEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, engine = served
    sessions: list[str | None] = []
    generate = engine.generate

    def recording(request: Any) -> Any:
        context = current_request()
        sessions.append(context.session if context is not None else "no context")
        return generate(request)

    monkeypatch.setattr(engine, "generate", recording)
    await create(client, prompt_cache_key="conversation-7")
    await create(client)
    await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, "input": "Hi", "prompt_cache_key": "k"},
                      headers={"x-session-id": "from-header"})  # fmt: skip
    assert sessions == ["conversation-7", None, "from-header"]


async def test_tool_choice_is_echoed_as_checked(served: tuple[httpx.AsyncClient, FakeEngine]) -> None:
    client, _ = served
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather", "x": 1}]}
    body = await create(client, tools=[WEATHER], tool_choice=allowed, parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "allowed_tools", "mode": "auto",
                                   "tools": [{"type": "function", "name": "get_weather"}]}  # fmt: skip
    assert body["parallel_tool_calls"] is False
