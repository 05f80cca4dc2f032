"""The HTTP surface over a scripted engine: shapes, errors, stop trimming, usage."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import UpstreamRejectedError, UpstreamUnavailableError
from tests.unit.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], **extra}


def sse_events(text: str) -> list[str]:
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    return [block for block in text.split("\n\n") if block]


def sse_json(text: str) -> list[dict]:
    return [json.loads(b.removeprefix("data: ")) for b in sse_events(text) if b != "data: [DONE]"]


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


async def test_chat_non_stream_shape_and_usage(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    response = await client.post(CHAT, json=chat_body())
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello world!", "refusal": None, "annotations": []}
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert fake_engine.requests[0].request_id == body["id"]
    assert fake_engine.requests[0].prompt.endswith("assistant<|end_header_id|>\n\n")


async def test_chat_length_finish_when_max_tokens_reached(client: httpx.AsyncClient) -> None:
    body = (await client.post(CHAT, json=chat_body(max_completion_tokens=2))).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Hello world"


async def test_chat_stream_chunks_role_first_then_finish_usage_done(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, json=chat_body(stream=True, stream_options={"include_usage": True}))
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_json(response.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert "".join(contents) == "Hello world!"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10
    assert len({c["id"] for c in chunks}) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_string_trimmed_across_chunk_borders(
    client: httpx.AsyncClient, fake_engine: FakeEngine, stream: bool
) -> None:
    fake_engine.pieces = ["The an", "swer is", " 42. END", "ING more"]
    response = await client.post(CHAT, json=chat_body(stream=stream, stop=["wer is 4", "zzz"]))
    if stream:
        chunks = sse_json(response.text)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        text = response.json()["choices"][0]["message"]["content"]
        finish = response.json()["choices"][0]["finish_reason"]
    assert text == "The ans"
    assert finish == "stop"


async def test_stream_stop_match_closes_engine_early(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.pieces = ["a", "b", "STOP", "c", "d"]
    await client.post(CHAT, json=chat_body(stream=True, stop="STOP"))
    assert fake_engine.closed_early == [fake_engine.requests[0].request_id]


async def test_usage_counted_with_tokenizer_when_engine_does_not(
    client: httpx.AsyncClient, fake_engine: FakeEngine, tokenizer: object
) -> None:
    fake_engine.count_tokens = False
    fake_engine.prompt_tokens = None  # type: ignore[assignment]
    body = (await client.post(CHAT, json=chat_body())).json()
    prompt = fake_engine.requests[0].prompt
    expected_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))  # type: ignore[attr-defined]
    expected_completion = len(tokenizer.encode("Hello world!", add_special_tokens=False))  # type: ignore[attr-defined]
    assert body["usage"]["prompt_tokens"] == expected_prompt
    assert body["usage"]["completion_tokens"] == expected_completion


async def test_completions_list_of_prompts(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    body = (await client.post("/v1/completions", json={"model": DEV_MODEL_NAME, "prompt": ["a", "b"]})).json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert all(c["text"] == "Hello world!" for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 6
    assert len({r.request_id for r in fake_engine.requests}) == 2


async def test_completions_stream_multiple_prompts_each_finish(client: httpx.AsyncClient) -> None:
    body = {"model": DEV_MODEL_NAME, "prompt": ["a", "b"], "stream": True}
    chunks = sse_json((await client.post("/v1/completions", json=body)).text)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert "".join(c["text"] for c in mine) == "Hello world!"
        assert mine[-1]["finish_reason"] == "stop"


async def test_echo_prepends_prompt(client: httpx.AsyncClient) -> None:
    body = {"model": DEV_MODEL_NAME, "prompt": "Say: ", "echo": True}
    assert (await client.post("/v1/completions", json=body)).json()["choices"][0]["text"] == "Say: Hello world!"


async def test_models_list_and_retrieve(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list" and listing["data"][0]["id"] == DEV_MODEL_NAME
    assert (await client.get(f"/v1/models/{DEV_MODEL_NAME}")).json()["id"] == DEV_MODEL_NAME
    assert_error(await client.get("/v1/models/nope"), 404)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 9}, "n"),
        ({"n": 0}, "n"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"stop": 5}, "stop"),
    ],
)
async def test_invalid_or_unsupported_fields_are_400_naming_the_field(
    client: httpx.AsyncClient, extra: dict, param: str
) -> None:
    assert_error(await client.post(CHAT, json=chat_body(**extra)), 400, param)


@pytest.mark.parametrize(
    ("stop", "param", "says"),
    [
        ([str(i) for i in range(20)], "stop", "at most 16 items"),
        (["ok", 7], "stop[1]", "valid string"),
    ],
)
async def test_a_field_with_alternative_types_gets_the_error_of_the_alternative_that_was_meant(
    client: httpx.AsyncClient, stop: list, param: str, says: str
) -> None:
    response = await client.post(CHAT, json=chat_body(stop=stop))
    assert_error(response, 400, param)
    assert says in response.json()["error"]["message"]


async def test_an_image_for_a_model_without_image_inputs_is_refused_naming_the_part(
    client: httpx.AsyncClient,
) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    response = await client.post(CHAT, json=chat_body(messages=messages))
    assert assert_error(response, 400, "messages[0].content[0].image_url")["code"] == "images_not_supported"


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    assert (await client.post(CHAT, json=chat_body(some_future_field={"x": 1}))).status_code == 200


async def test_malformed_json_is_400_not_422(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, content=b'{"model": ', headers={"content-type": "application/json"})
    assert assert_error(response, 400)["code"] == "invalid_json"


@pytest.mark.parametrize("body", [b'{"model": "\xff\xfe"}', b'{"\xc3\x28": 1}', b'{"prompt": "\xc0\xaf"}'])
async def test_a_body_that_is_not_utf8_is_invalid_json_too(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(CHAT, content=body, headers={"content-type": "application/json"})
    error = assert_error(response, 400)
    assert error["code"] == "invalid_json" and "UTF-8" in error["message"]


async def test_missing_model_field(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]}), 400, "model")


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.post(CHAT, json=chat_body(model="gpt-5")), 404, "model")
    assert error["code"] == "model_not_found"


async def test_unknown_route_is_openai_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404)


async def test_upstream_unavailable_before_stream_is_503(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.fail_with = UpstreamUnavailableError("down")
    assert_error(await client.post(CHAT, json=chat_body(stream=True)), 503)


async def test_upstream_rejection_is_400(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.fail_with = UpstreamRejectedError("bad value")
    assert_error(await client.post(CHAT, json=chat_body()), 400)


async def test_failure_after_streaming_started_is_error_event_then_done(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_with = UpstreamUnavailableError("Triton went away")
    fake_engine.fail_after = 2
    response = await client.post(CHAT, json=chat_body(stream=True))
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-2].startswith("event: error\ndata: ")
    error = json.loads(events[-2].split("data: ", 1)[1])["error"]
    assert error["type"] == "service_unavailable" and "Triton went away" in error["message"]


async def test_health_ready_follows_engine(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    fake_engine.ready = False
    assert_error(await client.get("/health/ready"), 503)
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/version")).json()["version"]


@pytest.mark.parametrize(
    "path", ["/metrics", "/health/live", "/health/ready", "/v1/models", f"/v1/models/{DEV_MODEL_NAME}", "/version"]
)
async def test_head_answers_like_get_without_a_body(client: httpx.AsyncClient, path: str) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) > 0
    if path != "/metrics":  # the metrics grow with every request
        assert int(head.headers["content-length"]) == len(get.content)
    assert head.headers["x-request-id"]


async def test_head_keeps_the_status_of_what_get_would_answer(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    assert (await client.head("/v1/models/nope")).status_code == 404
    fake_engine.ready = False
    assert (await client.head("/health/ready")).status_code == 503
    not_allowed = await client.head(CHAT)  # a POST route: 405, as for GET
    assert not_allowed.status_code == 405 and not_allowed.content == b""


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"top_p": 1.0, "top_k": None, "temperature": None}),
        ({"temperature": 0.7}, {"top_p": 1.0, "top_k": None, "temperature": 0.7}),
        ({"temperature": 0}, {"top_p": None, "top_k": 1, "temperature": None}),
        ({"temperature": 0.5, "top_k": 40}, {"top_p": None, "top_k": 40, "temperature": 0.5}),
        ({"top_k": -1, "top_p": 0.9}, {"top_p": 0.9, "top_k": None, "temperature": None}),
    ],
)
async def test_openai_sampling_defaults_reach_the_engine_explicitly(
    client: httpx.AsyncClient, fake_engine: FakeEngine, fields: dict, expected: dict
) -> None:
    await client.post(CHAT, json=chat_body(**fields))
    sampling = fake_engine.requests[0].sampling
    assert {name: getattr(sampling, name) for name in expected} == expected


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_call_cut_by_max_tokens_is_a_tool_call_with_finish_reason_length(
    client: httpx.AsyncClient, fake_engine: FakeEngine, stream: bool
) -> None:
    fake_engine.capable = EngineCapabilities("fake", guided_decoding=True)
    fake_engine.pieces = ['[{"name":"get_weather",', '"arguments":{', '"city":"Pa', 'ris"}}]']
    body = chat_body(tools=[WEATHER_TOOL], tool_choice="required", max_tokens=3, stream=stream)
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    if stream:
        chunks = [c["choices"][0] for c in sse_json(response.text) if c["choices"]]
        finish = chunks[-1]["finish_reason"]
        parts = [part for c in chunks for part in c["delta"].get("tool_calls") or []]
        arguments = "".join(part["function"]["arguments"] for part in parts)
        calls = [{"name": parts[0]["function"]["name"], "arguments": arguments}]
        content = "".join(c["delta"].get("content") or "" for c in chunks)
    else:
        choice = response.json()["choices"][0]
        finish, content = choice["finish_reason"], choice["message"]["content"]
        calls = [call["function"] for call in choice["message"]["tool_calls"]]
    assert finish == "length" and not content
    assert calls == [{"name": "get_weather", "arguments": '{"city":"Pa'}]
