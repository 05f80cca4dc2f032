"""Fuzzing POST /v1/chat/completions and /v1/completions in-process, over the scripted engine.

Malformed and adversarial bodies (wrong types, huge numbers, NaN/1e999 tokens, invalid UTF-8, lone surrogates, deep
nesting, 10 MB strings, non-object top levels, wrong content types, duplicate keys, odd messages) never get a 5xx,
every error is exactly an OpenAI error body, nothing leaks a traceback; valid requests drawn from the same
strategies get a well-formed 200. Bounded for CI by MAX_EXAMPLES; `--fuzz-long` (or GATEWAY_FUZZ_LONG=1) runs many
more examples.

Besides the HTTP answer, everything the gateway hands the engine must be encodable as UTF-8 (Triton's BYTES
tensors are): the scripted engine records it, `check_engine_inputs` checks it. Hostile guides and tools
(tests/hostile_schemas.py: deep nesting, `$ref` chains, huge enums, lone surrogates) go to an engine that
enforces guides, and the event loop must never stall while one is answered.

Gateway bugs found here are kept as regression tests at the end. A newly found bug is pinned there as a strict
xfail until it is fixed.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import time
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from tests.hostile_schemas import encode, hostile_requests
from tests.unit.fake_engine import FakeEngine

FUZZ_LONG = os.environ.get("GATEWAY_FUZZ_LONG") == "1"
MAX_EXAMPLES = 1500 if FUZZ_LONG else 60
HUGE_EXAMPLES = 12 if FUZZ_LONG else 3  # 10 MB bodies: a few examples only
REQUEST_TIMEOUT_S = 30.0
TEN_MB = 10 * 1024 * 1024

FUZZ = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one in-process client serves every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ENDPOINTS = [CHAT, COMPLETIONS]

COMMON_FIELDS = [
    "model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty",
    "stream", "stream_options", "user", "top_k", "min_tokens", "repetition_penalty", "ignore_eos", "logprobs",
    "logit_bias", "best_of",
]  # fmt: skip
FIELDS = {
    CHAT: [
        *COMMON_FIELDS, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "functions",
        "function_call", "response_format", "audio", "modalities", "prediction", "reasoning_effort",
        "web_search_options", "structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
        "parallel_tool_calls",
    ],
    COMPLETIONS: [*COMMON_FIELDS, "prompt", "echo", "suffix"],
}  # fmt: skip


# --- raw JSON: fragments json.dumps cannot write -------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written verbatim: NaN, 1e999, a lone-surrogate escape, invalid UTF-8, deep nesting."""

    data: bytes


@dataclass(frozen=True)
class Pairs:
    """A JSON object written from (key, value) pairs, so that a key may repeat."""

    items: tuple[tuple[Any, Any], ...]


def dump(value: Any) -> bytes:
    """Serialize a value that may hold Raw fragments and Pairs objects (strings as raw UTF-8)."""
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        return b"{" + b",".join(dump(k) + b":" + dump(v) for k, v in items) + b"}"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(dump(v) for v in value) + b"]"
    return json.dumps(value, ensure_ascii=False).encode()


def deep(depth: int, kind: str) -> Raw:
    """`depth` nested lists, objects, or both."""
    if kind == "list":
        return Raw(b"[" * depth + b"]" * depth)
    if kind == "object":
        return Raw(b'{"a":' * depth + b"1" + b"}" * depth)
    return Raw(b'[{"a":' * depth + b"0" + b"}]" * depth)


HUGE_NUMBERS: list[Any] = [
    10**30, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 2**70, -(2**70), 10**400,
    Raw(b"1e30"), Raw(b"-1e30"), Raw(b"1e999"), Raw(b"-1e999"), Raw(b"1E400"), Raw(b"NaN"), Raw(b"Infinity"),
    Raw(b"-Infinity"), Raw(b"-0.0"), Raw(b"5e-324"), Raw(b"1e-400"), Raw(b"9" * 5000), Raw(b"0." + b"0" * 1000 + b"1"),
    0, -1, 1.5, True, False,
]  # fmt: skip
SURROGATES = [
    Raw(b'"\\ud800"'), Raw(b'"x\\udfffy"'), Raw(b'"\\ud83d"'), Raw(b'"\\ude00\\ud83d"'), Raw(b'"\\ud83d\\ude00"'),
    Raw(b'"\\u0000"'), Raw(b'"\\uffff\\ufffe"'),
]  # fmt: skip
INVALID_UTF8 = [
    b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xc0\xaf", b"\xc1\xbf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82",
]  # fmt: skip
DEPTHS = [64, 500, 990, 1500, 10_000]
CONTENT_TYPES = [
    None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "multipart/form-data", "application/xml", "*/*", "application/json; charset=latin-1",
    "application/json; charset=utf-16", "application/json; charset=nope", "application/vnd.api+json",
    "application/json-patch+json", "APPLICATION/JSON", "application/jsonx", "application/octet-stream",
]  # fmt: skip

plain_ascii = st.text(alphabet=string.ascii_letters + " ", max_size=6).map(str.encode)
invalid_utf8_strings = st.builds(
    lambda pre, bad, post: Raw(b'"' + pre + bad + post + b'"'), plain_ascii, st.sampled_from(INVALID_UTF8), plain_ascii
)
deep_values = st.builds(deep, st.sampled_from(DEPTHS), st.sampled_from(["list", "object", "mixed"]))
long_strings = st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.sampled_from([1000, 70_000]))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
adversarial_scalars = st.one_of(
    json_scalars, st.sampled_from(HUGE_NUMBERS), st.sampled_from(SURROGATES), invalid_utf8_strings
)
adversarial_values = st.one_of(json_values, adversarial_scalars, deep_values, long_strings)


# --- valid requests ---------------------------------------------------------------------------------------------

texts = st.text(max_size=40)
text_parts = st.builds(lambda t: {"type": "text", "text": t}, texts)
tool_calls = st.lists(
    st.builds(
        lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
        texts,
        texts,
        st.sampled_from(["{}", '{"x": 1}', ""]),
    ),
    min_size=1,
    max_size=2,
)


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message the gateway and the dev chat template accept."""
    role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
    message: dict[str, Any] = {"role": role}
    content = draw(st.one_of(texts, st.lists(text_parts, max_size=3), st.none()))
    if content is not None or draw(st.booleans()):
        message["content"] = content
    if draw(st.booleans()):
        message["name"] = draw(texts)
    if role == "assistant" and draw(st.booleans()):
        message["tool_calls"] = draw(tool_calls)
    return message


def answered_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A history in which every tool message answers a call of the assistant message just before it (as
    OpenAI requires: `tool_call_id` names an earlier call)."""
    history: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            call_id = f"call_{index}"
            call = {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
            message = message | {"tool_call_id": call_id}
        history.append(message)
    return history


probabilities = st.floats(0, 1)
penalties = st.floats(-2, 2)
SAMPLING = {
    "max_tokens": st.integers(1, 1000),
    "temperature": st.floats(0, 2),
    "top_p": probabilities,
    "n": st.integers(1, 3),
    "stop": st.one_of(st.none(), st.text(max_size=5), st.lists(st.text(max_size=5), max_size=16)),
    "seed": st.integers(-(2**63), 2**64 - 1),
    "presence_penalty": penalties,
    "frequency_penalty": penalties,
    "stream": st.booleans(),
    "user": texts,
    "top_k": st.integers(-1, 2**31 - 1),
    "min_tokens": st.integers(0, 2**31 - 1),
    "repetition_penalty": st.floats(0, 10, exclude_min=True),
    "ignore_eos": st.booleans(),
    "logprobs": st.sampled_from([None, False]),
    "logit_bias": st.sampled_from([None, {}]),
    "best_of": st.sampled_from([None, 1]),
}
CHAT_EXTRAS = {
    "max_completion_tokens": st.integers(1, 1000),
    "response_format": st.sampled_from([None, {"type": "text"}]),
    "tool_choice": st.sampled_from([None, "none", "auto"]),
    "modalities": st.sampled_from([None, ["text"]]),
    "tools": st.sampled_from([None, []]),
}
COMPLETION_EXTRAS = {"echo": st.booleans(), "suffix": st.sampled_from([None, ""])}
unknown_keys = st.text(max_size=12).map(lambda k: f"x-unknown-{k}")


@st.composite
def valid_bodies(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """A request body the gateway must answer with a 200."""
    body: dict[str, Any] = {"model": DEV_MODEL_NAME}
    if path == CHAT:
        body["messages"] = draw(st.lists(valid_messages(), min_size=1, max_size=5).map(answered_tool_calls))
        extras = CHAT_EXTRAS
    else:
        prompts = st.text(min_size=1, max_size=40)
        body["prompt"] = draw(st.one_of(prompts, st.lists(prompts, min_size=1, max_size=8)))
        extras = COMPLETION_EXTRAS
    body |= draw(st.fixed_dictionaries({}, optional=SAMPLING | extras))
    if body.get("stream") is True and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())}
    body |= draw(st.dictionaries(unknown_keys, json_values, max_size=2))
    return body


# --- malformed requests -----------------------------------------------------------------------------------------

odd_roles = st.one_of(
    st.sampled_from(["developer", "function", "", "USER", "ai", "bot", " user", "user\x00", "assistant\n"]),
    st.sampled_from(SURROGATES),
    json_values,
)
odd_parts = st.one_of(
    st.sampled_from(
        [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "refusal", "refusal": "no"},
            {"type": "file", "file": {}},
            {"type": "text"},
            {"text": "no type"},
            {"type": "TEXT", "text": "x"},
        ]
    ),
    st.builds(lambda v: {"type": v, "text": "x"}, adversarial_scalars),
    st.builds(lambda v: {"type": "text", "text": v}, adversarial_values),
    json_values,
)


odd_tool_calls = st.builds(
    lambda name, arguments, call_id: {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    },
    adversarial_scalars,
    st.one_of(adversarial_values, st.dictionaries(st.text(max_size=5), adversarial_scalars, max_size=3)),
    adversarial_scalars,
)


@st.composite
def odd_messages(draw: st.DrawFn) -> Any:
    """A message with an odd role, content, content part, name, or tool call; or not a message at all."""
    message: dict[str, Any] = dict(draw(valid_messages()))
    choice = draw(st.sampled_from(["role", "content", "parts", "name", "tool_calls", "tool_call_id", "drop", "junk"]))
    if choice == "role":
        message["role"] = draw(odd_roles)
    elif choice == "content":
        message["content"] = draw(adversarial_values)
    elif choice == "parts":
        message["content"] = draw(st.lists(st.one_of(text_parts, odd_parts), min_size=1, max_size=4))
    elif choice in ("name", "tool_call_id"):
        message[choice] = draw(adversarial_values)
    elif choice == "tool_calls":
        message["role"] = "assistant"
        message["tool_calls"] = draw(
            st.one_of(adversarial_values, st.lists(st.one_of(adversarial_values, odd_tool_calls), max_size=3))
        )
    elif choice == "drop":
        message.pop("role")
    else:
        return draw(adversarial_values)
    return message


FIELD_ODDITIES: dict[str, st.SearchStrategy[Any]] = {
    "max_tokens": st.sampled_from([0, -1, 1001, 2**31, 2**63, 2**70, 10**100, 1.0, 1.5, "16", Raw(b"1e30")]),
    "max_completion_tokens": st.sampled_from([0, -1, 1001, 2**70, 2.5, "8"]),
    "stop": st.one_of(
        st.sampled_from([[""] * 17, ["x"] * 1000, [None], [1, 2], [["a"]], {"a": "b"}]),
        st.lists(st.text(max_size=3), min_size=17, max_size=40),
    ),
    "messages": st.one_of(
        st.lists(odd_messages(), min_size=1, max_size=4),
        st.sampled_from([[], {}, "hi", [[]], None]),
        st.integers(1, 1000).map(lambda n: [{"role": "user", "content": "x"}] * n),
    ),
    "prompt": st.one_of(
        st.sampled_from([[], [""], [[1, 2, 3]], [1, 2, 3], [None], {"text": "x"}]),
        st.lists(texts, min_size=65, max_size=80),
    ),
    "n": st.sampled_from([0, 2, 128, 129, -1, 2**70, 1.0]),
    "temperature": st.sampled_from([-0.0, -1e-9, 2.0000001, Raw(b"2.0e0"), "0.5"]),
    "top_p": st.sampled_from([1.0000001, -0.0, -1e-300]),
    "top_k": st.sampled_from([-2, 0, 2**31, 2**63, 2**70]),
    "min_tokens": st.sampled_from([-1, 2**31, 2**70]),
    "seed": st.sampled_from([-(2**63) - 1, 2**64, 1.5, "1"]),
    "repetition_penalty": st.sampled_from([0, -0.0, 1e-300, 10.0000001]),
    "stream": st.sampled_from(["true", 1, 0, None, [True]]),
    "stream_options": st.sampled_from([{"include_usage": True}, {"include_usage": "yes"}, [], {}]),
    "echo": st.sampled_from(["true", 1, None]),
    "logprobs": st.sampled_from([True, 5, {"x": 1}]),
    "top_logprobs": st.sampled_from([3, 0, -1]),
    "logit_bias": st.sampled_from([{"50256": -100}, {"x": 1e999}]),
    "best_of": st.sampled_from([2, 0, [1]]),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "json_schema"}, "text", {}]),
    "tool_choice": st.sampled_from(["required", {"type": "function"}, ["auto"]]),
    "modalities": st.sampled_from([["audio"], ["text", "audio"], {"a": 1}, "text"]),
    "tools": st.sampled_from([[{"type": "function", "function": {"name": "f"}}], {"a": 1}]),
    "suffix": st.sampled_from(["x", 1]),
}


@st.composite
def malformed_bodies(draw: st.DrawFn, path: str) -> Any:
    """A valid body with 1-4 mutations: fields dropped, set to adversarial values, unknown fields, duplicate keys."""
    body: dict[str, Any] = dict(draw(valid_bodies(path)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "wrong", "wrong", "odd", "odd", "unknown"]))
        if action == "drop" and body:
            body.pop(draw(st.sampled_from(list(body))))
        elif action == "wrong":
            body[draw(st.sampled_from(FIELDS[path]))] = draw(adversarial_values)
        elif action == "odd":
            field = draw(st.sampled_from(sorted(set(FIELD_ODDITIES) & set(FIELDS[path]))))
            body[field] = draw(FIELD_ODDITIES[field])
        else:
            key = draw(st.one_of(unknown_keys, st.sampled_from(SURROGATES), invalid_utf8_strings))
            body[key] = draw(adversarial_values)
    if body and draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(list(body)))
        duplicate = (key, draw(adversarial_values))
        return Pairs((*body.items(), duplicate) if draw(st.booleans()) else (duplicate, *body.items()))
    return body


@dataclass(frozen=True)
class RawRequest:
    """Bytes to POST and the Content-Type header to send them with (None: no header)."""

    body: bytes
    content_type: str | None = "application/json"

    def __repr__(self) -> str:
        """Short enough for hypothesis's falsifying-example report."""
        return f"RawRequest(content_type={self.content_type!r}, body={preview(self.body)})"


@st.composite
def raw_requests(draw: st.DrawFn, path: str) -> RawRequest:
    """Malformed bodies, plus body-level damage: truncation, empty, non-object top level, encodings, content types."""
    kind = draw(st.sampled_from(["mutated"] * 8 + ["top-level", "truncated", "empty", "encoding", "content-type"]))
    if kind == "top-level":
        return RawRequest(dump(draw(st.one_of(adversarial_values, st.lists(st.just({"model": DEV_MODEL_NAME}))))))
    if kind == "empty":
        return RawRequest(draw(st.sampled_from([b"", b" ", b"\n", b"\x00", b"{", b"}", b"null", b"{}"])))
    data = dump(draw(malformed_bodies(path) if kind != "content-type" else valid_bodies(path)))
    if kind == "truncated":
        return RawRequest(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if kind == "encoding":
        text = data.decode("utf-8", errors="surrogateescape")
        encoded = {
            "bom": b"\xef\xbb\xbf" + data,
            "utf-16": text.encode("utf-16", errors="surrogatepass"),
            "utf-32-le": text.encode("utf-32-le", errors="surrogatepass"),
            "latin-1": text.encode("latin-1", errors="replace"),
            "trailing": data + draw(st.sampled_from([b"x", b"{}", b"\x00", b" , ", b"\xff"])),
        }
        return RawRequest(encoded[draw(st.sampled_from(sorted(encoded)))])
    if kind == "content-type":
        return RawRequest(data, draw(st.sampled_from(CONTENT_TYPES)))
    return RawRequest(data)


# --- the invariants ---------------------------------------------------------------------------------------------


def preview(data: bytes | str, limit: int = 300) -> str:
    """A bounded repr of a request or response body."""
    text = repr(data[:limit])
    return text + f"... ({len(data)} in all)" if len(data) > limit else text


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone surrogate in any string (keys included)."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


async def post(client: httpx.AsyncClient, path: str, request: RawRequest) -> httpx.Response:
    """POST raw bytes; a hang or an exception escaping the app is a failure."""
    headers = {} if request.content_type is None else {"content-type": request.content_type}
    try:
        return await asyncio.wait_for(client.post(path, content=request.body, headers=headers), REQUEST_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"no answer in {REQUEST_TIMEOUT_S} s: {request!r}") from None
    except Exception as exc:
        raise AssertionError(f"the app raised {exc!r} for {request!r}") from exc


def sse_payloads(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body, which must end with `data: [DONE]` and hold no error event."""
    assert text.endswith("data: [DONE]\n\n"), preview(text[-300:])
    events = [block for block in text.split("\n\n") if block]
    assert not any(e.startswith("event: error") for e in events), preview(text)
    assert all(e.startswith("data: ") for e in events), preview(text)
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def check_invariants(response: httpx.Response) -> None:
    """No 5xx, no leaked traceback, an exact OpenAI error body on every non-2xx, a parseable 2xx body."""
    text = response.text
    context = f"{response.status_code}: {preview(text)}"
    assert response.status_code < 500, context
    assert "Traceback" not in text and 'File "/' not in text, context
    if response.is_success:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            sse_payloads(text)
        else:
            assert isinstance(response.json(), dict), context
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, context
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, context
    assert isinstance(error["message"], str) and error["message"].strip(), context
    assert isinstance(error["type"], str) and error["type"], context
    assert error["param"] is None or isinstance(error["param"], str), context
    assert error["code"] is None or isinstance(error["code"], str), context


def check_engine_inputs(engine: FakeEngine) -> None:
    """What the gateway handed the engine can travel as UTF-8 (the Triton engine encodes prompt, stops, guide)."""
    for request in engine.requests:
        for text in (request.prompt, *request.stop, request.guide or ""):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise AssertionError(f"the engine got text that is not valid Unicode: {preview(text)}") from exc
    engine.requests.clear()


def check_usage(usage: Any) -> None:
    """An OpenAI usage object."""
    assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}, usage
    assert all(isinstance(v, int) and v >= 0 for v in usage.values()), usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage


def check_well_formed(path: str, body: dict[str, Any], response: httpx.Response) -> None:
    """A 200 whose body is the completion object the request asked for."""
    assert response.status_code == 200, f"{response.status_code}: {preview(response.text)} for {preview(dump(body))}"
    check_invariants(response)
    prompts = [body["prompt"]] if isinstance(body.get("prompt"), str) else body.get("prompt", [None])
    n = body.get("n") or 1
    choices = len(prompts) * n  # choice p * n + i is prompt p's i-th
    finish_reasons = {"stop", "length"}
    if body.get("stream"):
        chunks = sse_payloads(response.text)
        kind = "chat.completion.chunk" if path == CHAT else "text_completion"
        assert chunks and all(c["object"] == kind for c in chunks) and len({c["id"] for c in chunks}) == 1
        finishes = [ch for c in chunks for ch in c["choices"] if ch["finish_reason"] is not None]
        assert sorted(ch["index"] for ch in finishes) == list(range(choices))
        assert {ch["finish_reason"] for ch in finishes} <= finish_reasons
        if (body.get("stream_options") or {}).get("include_usage"):
            assert chunks[-1]["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
            check_usage(chunks[-1]["usage"])
        return
    result = response.json()
    assert result["object"] == ("chat.completion" if path == CHAT else "text_completion"), result
    check_usage(result["usage"])
    assert [c["index"] for c in result["choices"]] == list(range(choices)), result
    assert all(c["finish_reason"] in finish_reasons for c in result["choices"]), result
    if path == CHAT:
        message = result["choices"][0]["message"]
        assert message["role"] == "assistant" and isinstance(message["content"], str), result
    else:
        assert all(isinstance(c["text"], str) for c in result["choices"]), result
        if body.get("echo"):
            echoed = [p for p in prompts for _ in range(n)]
            assert all(c["text"].startswith(p) for c, p in zip(result["choices"], echoed, strict=True)), result


# --- the properties ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@FUZZ
@given(data=st.data())
async def test_malformed_bodies_never_5xx_and_errors_are_openai_bodies(
    client: httpx.AsyncClient, fake_engine: FakeEngine, path: str, data: st.DataObject
) -> None:
    request = data.draw(raw_requests(path), label="request")
    response = await post(client, path, request)
    event(f"status {response.status_code}")
    check_invariants(response)
    check_engine_inputs(fake_engine)


@pytest.mark.parametrize("path", ENDPOINTS)
@FUZZ
@given(data=st.data())
async def test_valid_bodies_get_a_well_formed_200(
    client: httpx.AsyncClient, fake_engine: FakeEngine, path: str, data: st.DataObject
) -> None:
    body = data.draw(valid_bodies(path), label="body")
    check_well_formed(path, body, await post(client, path, RawRequest(dump(body))))
    check_engine_inputs(fake_engine)


STALL_S = 0.2  # the longest the event loop may go without running another task


async def longest_stall_while(work: asyncio.Future[httpx.Response]) -> float:
    """The longest the event loop went without running a 5 ms ticker while `work` ran."""
    longest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


@FUZZ
@given(data=st.data())
async def test_hostile_guides_never_5xx_nor_stall_the_loop(
    client: httpx.AsyncClient, fake_engine: FakeEngine, data: st.DataObject
) -> None:
    fake_engine.capable = EngineCapabilities("fake", return_sequences=True, logprobs=True, guided_decoding=True)
    body = data.draw(hostile_requests(DEV_MODEL_NAME), label="body")
    sent = asyncio.ensure_future(post(client, CHAT, RawRequest(encode(body))))
    stall = await longest_stall_while(sent)
    response = await sent
    event(f"status {response.status_code}")
    check_invariants(response)
    check_engine_inputs(fake_engine)
    assert stall < STALL_S, f"the event loop stalled {stall:.3f} s"


HUGE_PLACES = ["prompt", "content", "stop", "model", "user", "unknown-value", "unknown-key", "name", "tool_calls"]


@pytest.mark.parametrize(
    "settings",
    [Settings(), Settings(max_body_bytes=4 * TEN_MB)],
    ids=["default-body-limit", "body-limit-above-10MB"],
)
@hypothesis.settings(FUZZ, max_examples=HUGE_EXAMPLES)
@given(place=st.sampled_from(HUGE_PLACES), char=st.sampled_from(["a", "é", "日", "🚀", " ", "\\", '"', "\x00"]))
async def test_ten_megabyte_strings(client: httpx.AsyncClient, settings: Settings, place: str, char: str) -> None:
    huge = char * (TEN_MB // len(char.encode()))
    body: dict[str, Any] = {"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]}
    path = CHAT
    if place == "prompt":
        path, body = COMPLETIONS, {"model": DEV_MODEL_NAME, "prompt": huge, "echo": True}
    elif place == "content":
        body["messages"][0]["content"] = huge
    elif place == "name":
        body["messages"][0]["name"] = huge
    elif place == "tool_calls":
        body["messages"] = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": huge}}]}]
    elif place == "unknown-value":
        body["x-unknown"] = huge
    elif place == "unknown-key":
        body[huge] = 1
    else:
        body[place] = huge
    response = await post(client, path, RawRequest(dump(body)))
    check_invariants(response)
    if settings.max_body_bytes < TEN_MB:
        assert response.status_code == 413, preview(response.text)


# --- explicit cases: every category at least once, whatever hypothesis draws -------------------------------------

M = DEV_MODEL_NAME.encode()
JSON = "application/json"
HI = b'"messages":[{"role":"user","content":"hi"}]'


def chat_raw(extra: bytes) -> bytes:
    """A chat body with `extra` members appended verbatim."""
    return b'{"model":"' + M + b'",' + HI + (b"," + extra if extra else b"") + b"}"


def completion_raw(extra: bytes) -> bytes:
    """A completions body with `extra` members appended verbatim."""
    return b'{"model":"' + M + b'","prompt":"hi"' + (b"," + extra if extra else b"") + b"}"


EXPLICIT_CASES: list[tuple[str, str, bytes, str | None, int | None]] = [
    ("empty-body", CHAT, b"", JSON, 400),
    ("whitespace-body", COMPLETIONS, b"  \n", JSON, 400),
    ("top-level-list", CHAT, b"[1, 2]", JSON, 400),
    ("top-level-string", COMPLETIONS, b'"x"', JSON, 400),
    ("top-level-null", CHAT, b"null", JSON, 400),
    ("top-level-number", COMPLETIONS, b"1e999", JSON, 400),
    ("top-level-NaN", CHAT, b"NaN", JSON, 400),
    ("temperature-NaN", CHAT, chat_raw(b'"temperature":NaN'), JSON, 400),
    ("temperature-1e999", COMPLETIONS, completion_raw(b'"temperature":1e999'), JSON, 400),
    ("top_p--Infinity", CHAT, chat_raw(b'"top_p":-Infinity'), JSON, 400),
    ("max_tokens-1e30", CHAT, chat_raw(b'"max_tokens":1e30'), JSON, 400),
    ("max_tokens-2**70", COMPLETIONS, completion_raw(b'"max_tokens":%d' % 2**70), JSON, 400),
    ("max_tokens--2**70", CHAT, chat_raw(b'"max_tokens":%d' % -(2**70)), JSON, 400),
    ("max_tokens-0", CHAT, chat_raw(b'"max_tokens":0'), JSON, 400),
    ("max_tokens--1", COMPLETIONS, completion_raw(b'"max_tokens":-1'), JSON, 400),
    ("max_completion_tokens-huge", CHAT, chat_raw(b'"max_completion_tokens":%d' % 2**70), JSON, 400),
    ("max_tokens-5000-digits", CHAT, chat_raw(b'"max_tokens":' + b"9" * 5000), JSON, 400),
    ("seed-2**70", CHAT, chat_raw(b'"seed":%d' % 2**70), JSON, 400),
    ("n-2**70", COMPLETIONS, completion_raw(b'"n":%d' % 2**70), JSON, 400),
    ("stop-1000", CHAT, chat_raw(b'"stop":' + dump(["x"] * 1000)), JSON, 400),
    ("stop-1000", COMPLETIONS, completion_raw(b'"stop":' + dump(["x"] * 1000)), JSON, 400),
    ("invalid-utf8", CHAT, chat_raw(b"").replace(b'"hi"', b'"\xff\xfe"'), JSON, 400),
    ("invalid-utf8-key", COMPLETIONS, completion_raw(b'"\xc3\x28":1'), JSON, 400),
    ("overlong-utf8", COMPLETIONS, b'{"model":"' + M + b'","prompt":"\xc0\xaf"}', JSON, 400),
    ("surrogate-content", CHAT, chat_raw(b"").replace(b'"hi"', b'"\\ud800"'), JSON, 400),
    ("surrogate-stop", COMPLETIONS, completion_raw(b'"stop":"\\udfff"'), JSON, 400),
    ("surrogate-pair-ok", CHAT, chat_raw(b"").replace(b'"hi"', b'"\\ud83d\\ude00"'), JSON, 200),
    ("cesu-8-surrogate", COMPLETIONS, b'{"model":"' + M + b'","prompt":"\xed\xa0\x80"}', JSON, 400),
    ("surrogate-unknown-key", CHAT, chat_raw(b'"\\ud800":1'), JSON, 200),
    ("deep-lists-10000", CHAT, deep(10_000, "list").data, JSON, 400),
    ("deep-in-field-10000", CHAT, chat_raw(b'"logit_bias":' + deep(10_000, "object").data), JSON, 400),
    ("deep-unknown-10000", COMPLETIONS, completion_raw(b'"x":' + deep(10_000, "mixed").data), JSON, 400),
    ("deep-tools-900", CHAT, chat_raw(b'"tools":' + deep(900, "list").data), JSON, 400),
    ("duplicate-model", CHAT, b'{"model":"nope",' + HI + b',"model":"' + M + b'"}', JSON, 200),
    ("duplicate-messages", CHAT, chat_raw(HI.replace(b'"hi"', b"5")), JSON, 400),
    ("text-plain", CHAT, chat_raw(b""), "text/plain", 400),
    ("form-urlencoded", COMPLETIONS, b"model=trtllm-dev&prompt=hi", "application/x-www-form-urlencoded", 400),
    ("multipart-no-boundary", CHAT, chat_raw(b""), "multipart/form-data", 400),
    ("no-content-type", COMPLETIONS, completion_raw(b""), None, 400),
    ("unknown-huge-value", CHAT, chat_raw(b'"zzz":"' + b"z" * 1_000_000 + b'"'), JSON, 200),
    ("unknown-huge-number", COMPLETIONS, completion_raw(b'"zzz":' + b"9" * 4000), JSON, 200),
    ("role-function", CHAT, chat_raw(b"").replace(b'"user"', b'"function"'), JSON, 400),
    ("content-part-image", CHAT, chat_raw(b"").replace(b'"hi"', b'[{"type":"image_url","image_url":{}}]'), JSON, 400),
    (
        "tool-calls-junk",
        CHAT,
        chat_raw(b"").replace(b'"user","content":"hi"', b'"assistant","tool_calls":[{}]'),
        JSON,
        400,
    ),
    ("prompt-empty", COMPLETIONS, b'{"model":"' + M + b'","prompt":""}', JSON, 400),
    ("prompt-list-with-empty", COMPLETIONS, b'{"model":"' + M + b'","prompt":["a",""]}', JSON, 400),
    ("top_k-int32-overflow", COMPLETIONS, completion_raw(b'"top_k":2147483648'), JSON, 400),
    ("min_tokens-int32-overflow-float", COMPLETIONS, completion_raw(b'"min_tokens":904438924366.0'), JSON, 400),
    ("temperature-subnormal", COMPLETIONS, completion_raw(b'"temperature":1e-45'), JSON, 200),
    ("prompt-token-ids", COMPLETIONS, b'{"model":"' + M + b'","prompt":[1,2,3]}', JSON, 400),
    ("prompt-65", COMPLETIONS, b'{"model":"' + M + b'","prompt":' + dump(["a"] * 65) + b"}", JSON, 400),
]


@pytest.mark.parametrize(
    ("path", "raw", "content_type", "status"),
    [
        pytest.param(p, r, ct, s, id=f"{name}-{'chat' if p == CHAT else 'completions'}")
        for name, p, r, ct, s in EXPLICIT_CASES
    ],
)
async def test_explicit_adversarial_bodies(
    client: httpx.AsyncClient,
    fake_engine: FakeEngine,
    path: str,
    raw: bytes,
    content_type: str | None,
    status: int | None,
) -> None:
    response = await post(client, path, RawRequest(raw, content_type))
    check_invariants(response)
    check_engine_inputs(fake_engine)
    if status is not None:
        assert response.status_code == status, preview(response.text)


# --- gateway bugs found by this suite -------------------------------------------------------------------------
# Fixed: plain regression tests. Open: strict xfail (see the module docstring).


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_lone_surrogate_in_model_is_a_400(client: httpx.AsyncClient, path: str) -> None:
    """Was a 500: the 404's message embedded the model name and orjson could not encode it."""
    raw = (chat_raw(b"") if path == CHAT else completion_raw(b"")).replace(b'"' + M + b'"', b'"\\ud800"')
    response = await post(client, path, RawRequest(raw))
    check_invariants(response)
    assert response.status_code == 400 and response.json()["error"]["param"] == "model", response.text


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_echo_of_lone_surrogate_prompt_is_a_400(client: httpx.AsyncClient, stream: bool) -> None:
    """Was a 500 (non-stream) or a 200 ending in a server_error event (stream): orjson could not encode the echo."""
    raw = completion_raw(b'"echo":true,"stream":' + (b"true" if stream else b"false")).replace(b'"hi"', b'"a\\ud800"')
    response = await post(client, COMPLETIONS, RawRequest(raw))
    check_invariants(response)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt", response.text


TOOL_CALL_SURROGATES = {
    "function-name": {"type": "function", "function": {"name": "a\ud800", "arguments": "{}"}},
    "arguments-string": {"type": "function", "function": {"name": "f", "arguments": "a\ud800"}},
    "arguments-object": {"type": "function", "function": {"name": "f", "arguments": {"k": "\udfff"}}},
    "id": {"id": "\ud800", "type": "function", "function": {"name": "f", "arguments": "{}"}},
}


@pytest.mark.parametrize("where", list(TOOL_CALL_SURROGATES))
async def test_bug_lone_surrogate_in_tool_calls(client: httpx.AsyncClient, fake_engine: FakeEngine, where: str) -> None:
    """Was a 500: free-form tool_calls let a lone surrogate reach the prompt (UnicodeEncodeError upstream)."""
    message = {"role": "assistant", "content": "x", "tool_calls": [TOOL_CALL_SURROGATES[where]]}
    raw = json.dumps({"model": DEV_MODEL_NAME, "messages": [message]}).encode()  # ensure_ascii: escapes stay
    response = await post(client, CHAT, RawRequest(raw))
    check_invariants(response)
    assert response.status_code == 400, response.text
    check_engine_inputs(fake_engine)
