"""JsonBodyRoute: the generation endpoints validate their body in one pydantic call, with FastAPI's exact errors.

Every body is sent to two routes of one app with the gateway's error handlers: the same endpoint on FastAPI's own
APIRoute and on JsonBodyRoute. Whatever the body (valid, invalid, not JSON, sent with any content type), both must
answer byte for byte the same: the same validated model, or the same OpenAI error.
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import Response, StreamingResponse

from gateway.api.errors import install_error_handlers
from gateway.api.json_body_route import JsonBodyRoute, is_json_media_type
from gateway.openai.protocol import ChatCompletionRequest, CompletionRequest


async def _chat(body: ChatCompletionRequest, request: Request) -> Response:
    return Response(body.model_dump_json(), media_type="application/json")


async def _completion(body: CompletionRequest, request: Request) -> Response:
    return Response(body.model_dump_json(), media_type="application/json")


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    for prefix, route_class in (("/plain", None), ("/fast", JsonBodyRoute)):
        router = APIRouter(route_class=route_class) if route_class else APIRouter()
        router.post(f"{prefix}/chat", response_model=None)(_chat)
        router.post(f"{prefix}/completion", response_model=None)(_completion)
        app.include_router(router)
    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return _app()


async def _both(app: FastAPI, endpoint: str, content: bytes, content_type: str | None) -> tuple[Any, Any]:
    headers = {"content-type": content_type} if content_type is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        plain = await client.post(f"/plain/{endpoint}", content=content, headers=headers)
        fast = await client.post(f"/fast/{endpoint}", content=content, headers=headers)
    return (plain.status_code, plain.content), (fast.status_code, fast.content)


MESSAGES = [{"role": "user", "content": "hi"}]
CHAT_BODIES: list[Any] = [
    {"model": "m", "messages": MESSAGES},
    {"model": "m", "messages": MESSAGES, "temperature": 1, "top_p": 0.5, "max_tokens": 7, "seed": 2**40, "n": 2},
    {"model": "m", "messages": MESSAGES, "stop": ["a", "b"], "stream": True, "stream_options": {"include_usage": True}},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "é ✓ 𝄞"}]}]},
    {"model": "m", "messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}], "extra": [1]},
    {"model": "m", "messages": MESSAGES, "response_format": {"type": "json_object"}, "logprobs": True},
    {"model": "m", "messages": MESSAGES, "max_tokens": 1.0},
    {"model": "m", "messages": MESSAGES, "max_tokens": "5"},
    {"model": "m", "messages": MESSAGES, "temperature": "1"},
    {"model": "m", "messages": MESSAGES, "stream": 1},
    {"model": "m", "messages": MESSAGES, "n": True},
    {"model": "m", "messages": []},
    {"model": 5, "messages": MESSAGES},
    {"messages": MESSAGES},
    {},
    [],
    "text",
    None,
]
RAW_BODIES = [
    b"",
    b"{",
    b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1e999}',
    b'{"model": "m", "model": "n", "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "\xff", "messages": []}',
    b'\xef\xbb\xbf{"model": "m", "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "m", "messages": [{"role": "user", "content": "x"}]}'.encode("utf-16"),
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    None,
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("body", [json.dumps(b).encode() for b in CHAT_BODIES] + RAW_BODIES)
async def test_chat_answers_match_fastapis(app: FastAPI, body: bytes, content_type: str | None) -> None:
    plain, fast = await _both(app, "chat", body, content_type)
    if is_json_media_type(content_type) and not utf8_without_bom(body):
        # FastAPI reads UTF-16, UTF-32 and a BOM: the gateway refuses what a UTF-8 proxy would read otherwise.
        assert fast[0] == 400 and json.loads(fast[1])["error"]["code"] == "invalid_json", fast
        assert b"RFC 8259" in fast[1]
    else:
        assert fast == plain


def utf8_without_bom(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not body.startswith(b"\xef\xbb\xbf")


async def test_fastapi_alone_would_take_a_utf16_body(app: FastAPI) -> None:
    """What require_utf8 is for: the plain route accepts UTF-16 JSON, and a BOM."""
    for body in (RAW_BODIES[-1], RAW_BODIES[-2]):
        plain, _ = await _both(app, "chat", body, "application/json")
        assert plain[0] == 200


COMPLETION_BODIES: list[Any] = [
    {"model": "m", "prompt": "x"},
    {"model": "m", "prompt": ["a", "b"], "logprobs": 2, "echo": True},
    {"model": "m", "prompt": ["a", ""]},
    {"model": "m", "prompt": "x", "logprobs": False},
    {"model": "m", "prompt": "x", "logprobs": True},
    {"model": "m", "prompt": [1, 2]},
]


@pytest.mark.parametrize("body", COMPLETION_BODIES)
async def test_completion_answers_match_fastapis(app: FastAPI, body: Any) -> None:
    plain, fast = await _both(app, "completion", json.dumps(body).encode(), "application/json")
    assert fast == plain


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
FIELDS = ["model", "messages", "max_tokens", "temperature", "n", "stop", "stream", "seed", "top_p", "logprobs"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.fixed_dictionaries({"model": st.just("m"), "messages": st.just(MESSAGES)}),
    changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=3),
)
async def test_random_bodies_match_fastapis(app: FastAPI, base: dict[str, Any], changes: dict[str, Any]) -> None:
    plain, fast = await _both(app, "chat", json.dumps(base | changes).encode(), "application/json")
    assert fast == plain


async def test_a_valid_body_skips_fastapis_dependency_solving(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(**_: Any) -> Any:
        raise AssertionError("FastAPI's handler ran")

    monkeypatch.setattr("fastapi.routing.solve_dependencies", refuse)
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        fast = await client.post("/fast/chat", content=body, headers={"content-type": "application/json"})
        with pytest.raises(AssertionError, match="FastAPI's handler ran"):
            await client.post("/plain/chat", content=body, headers={"content-type": "application/json"})
    assert fast.status_code == 200
    assert fast.json()["messages"][0]["content"] == "hi"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON ; charset=utf-8", True),
        ("application/problem+json", True),
        ("application/jsonp", False),
        ("text/json", False),
        ("application", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(content_type: str | None, expected: bool) -> None:
    assert is_json_media_type(content_type) is expected


@pytest.mark.parametrize("prefix", ["/plain", "/fast"])
async def test_a_client_that_leaves_during_its_body_gets_fastapis_400(app: FastAPI, prefix: str) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"{prefix}/chat", "raw_path": f"{prefix}/chat".encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    incoming = [{"type": "http.request", "body": b'{"model": ', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"There was an error parsing the body" in sent[1]["body"]


async def test_a_running_stream_does_not_keep_the_request_body() -> None:
    """The route drops the request, its raw body and the validated model before the response runs."""
    kept: list[weakref.ref[Any]] = []
    alive: list[bool] = []
    release = asyncio.Event()

    async def stream(body: ChatCompletionRequest, request: Request) -> Response:
        kept.append(weakref.ref(body))

        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            await release.wait()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = FastAPI()
    router = APIRouter(route_class=JsonBodyRoute)
    router.post("/stream", response_model=None)(stream)
    app.include_router(router)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/stream", "raw_path": b"/stream", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    incoming = [{"type": "http.request", "body": json.dumps({"model": "m", "messages": MESSAGES}).encode()}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body") and not alive:
            gc.collect()
            alive.append(kept[0]() is not None)
            release.set()

    await asyncio.wait_for(app(scope, receive, send), 5)
    assert alive == [False]
