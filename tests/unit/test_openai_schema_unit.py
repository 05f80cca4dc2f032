"""tests/e2e/openai_schema.json, the OpenAI response schemas the e2e suite checks against, can accept and can refuse.

The valid examples are OpenAI's own (the `x-oaiMeta` examples of openapi.yaml and a real error body); each broken
one changes a single field, so a schema that accepted everything would fail here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "e2e" / "openai_schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())


def validator(name: str) -> Draft202012Validator:
    """A validator for `$defs/<name>`, refs resolved within the file."""
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]})


CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1677652288,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "\n\nHello there, how may I assist you today?",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 12,
        "total_tokens": 21,
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

_CHUNK_HEAD = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1694268190,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_44709d6fcb",
}
CHAT_CHUNKS: list[dict[str, Any]] = [
    _CHUNK_HEAD
    | {
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ]
    },
    _CHUNK_HEAD | {"choices": [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}]},
    _CHUNK_HEAD | {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    _CHUNK_HEAD | {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}},
]

COMPLETION: dict[str, Any] = {
    "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
    "object": "text_completion",
    "created": 1589478378,
    "model": "gpt-4-turbo",
    "choices": [{"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}

ERROR: dict[str, Any] = {
    "error": {
        "message": "The model 'nope' does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
}

MODEL_LIST: dict[str, Any] = {
    "object": "list",
    "data": [
        {"id": "model-id-0", "object": "model", "created": 1686935002, "owned_by": "organization-owner"},
        {"id": "model-id-1", "object": "model", "created": 1686935002, "owned_by": "openai"},
    ],
}

# openapi.yaml's own Response example (x-oaiMeta of `Response`, commit f85dbe2) with two changes its own schema
# asks for: `user` left out (it writes null; the schema types it as a string) and the output_text part's required
# `logprobs` added.
RESPONSE: dict[str, Any] = {
    "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
    "object": "response",
    "created_at": 1741476777,
    "status": "completed",
    "completed_at": 1741476778,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4o-2024-08-06",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "The image depicts a scenic landscape.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 328,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 52,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 380,
    },
    "metadata": {},
}
# The `response.output_text.delta` example of the same spec, with its required `logprobs` added.
TEXT_DELTA: dict[str, Any] = {
    "type": "response.output_text.delta",
    "item_id": "msg_123",
    "output_index": 0,
    "content_index": 0,
    "delta": "In",
    "sequence_number": 1,
    "logprobs": [],
}
CREATED: dict[str, Any] = {"type": "response.created", "response": RESPONSE, "sequence_number": 0}

VALID = [
    pytest.param("Response", RESPONSE, id="response"),
    pytest.param("ResponseStreamEvent", TEXT_DELTA, id="response-text-delta"),
    pytest.param("ResponseStreamEvent", CREATED, id="response-created"),
    pytest.param("CreateChatCompletionResponse", CHAT_COMPLETION, id="chat-completion"),
    *(
        pytest.param("CreateChatCompletionStreamResponse", chunk, id=f"chat-chunk-{i}")
        for i, chunk in enumerate(CHAT_CHUNKS)
    ),
    pytest.param("CreateCompletionResponse", COMPLETION, id="completion"),
    pytest.param("ErrorResponse", ERROR, id="error"),
    pytest.param("ListModelsResponse", MODEL_LIST, id="model-list"),
    pytest.param("Model", MODEL_LIST["data"][0], id="model"),
]


@pytest.mark.parametrize(("name", "instance"), VALID)
def test_openai_examples_validate(name: str, instance: dict[str, Any]) -> None:
    validator(name).validate(instance)


def broken(instance: dict[str, Any], path: tuple[str | int, ...], value: Any = ...) -> dict[str, Any]:
    """A deep copy of `instance` with the field at `path` set to `value` (removed when `value` is omitted)."""
    result = copy.deepcopy(instance)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


INVALID = [
    pytest.param("Response", broken(RESPONSE, ("status",), "done"), "enum", id="response-status-done"),
    pytest.param("Response", broken(RESPONSE, ("output", 0, "role")), "oneOf", id="response-message-without-role"),
    pytest.param(
        "Response", broken(RESPONSE, ("usage", "input_tokens_details")), "required", id="response-usage-details"
    ),
    # What the gateway leaves out rather than null: the schema refuses a null `user` and `usage`.
    pytest.param("Response", RESPONSE | {"user": None}, "type", id="response-user-null"),
    pytest.param("Response", RESPONSE | {"usage": None}, "type", id="response-usage-null"),
    pytest.param("ResponseTextDeltaEvent", broken(TEXT_DELTA, ("logprobs",)), "required", id="text-delta-no-logprobs"),
    pytest.param("ResponseStreamEvent", TEXT_DELTA | {"type": "response.text.delta"}, "anyOf", id="unknown-event"),
    pytest.param("CreateChatCompletionResponse", broken(CHAT_COMPLETION, ("choices",)), "required", id="no-choices"),
    pytest.param(
        "CreateChatCompletionResponse",
        broken(CHAT_COMPLETION, ("choices", 0, "finish_reason"), "done"),
        "enum",
        id="finish-reason-done",
    ),
    pytest.param(
        "CreateChatCompletionResponse",
        broken(CHAT_COMPLETION, ("choices", 0, "message", "role")),
        "required",
        id="message-without-role",
    ),
    pytest.param(
        "CreateChatCompletionResponse",
        broken(CHAT_COMPLETION, ("choices", 0, "message", "refusal")),
        "required",
        id="message-without-refusal",
    ),
    pytest.param(
        "CreateChatCompletionResponse",
        broken(CHAT_COMPLETION, ("usage", "total_tokens"), "21"),
        "type",
        id="usage-total-tokens-string",
    ),
    pytest.param(
        "CreateChatCompletionStreamResponse",
        broken(CHAT_CHUNKS[1], ("object",), "text_completion"),
        "enum",
        id="chat-chunk-object-text-completion",
    ),
    pytest.param(
        "CreateChatCompletionStreamResponse",
        broken(CHAT_CHUNKS[2], ("choices", 0, "finish_reason"), "done"),
        "enum",
        id="chat-chunk-finish-reason-done",
    ),
    pytest.param(
        "CreateChatCompletionStreamResponse",
        broken(CHAT_CHUNKS[1], ("choices", 0, "delta", "role"), "bot"),
        "enum",
        id="chat-chunk-delta-role-bot",
    ),
    pytest.param(
        "CreateChatCompletionStreamResponse",
        broken(CHAT_CHUNKS[1], ("choices", 0, "delta")),
        "required",
        id="chat-chunk-without-delta",
    ),
    # The spec at the pinned commit does not declare the stream chunk's `usage` nullable (its prose says it is
    # null on every chunk but the last): this pins that strictness, which the e2e xfail relies on.
    pytest.param(
        "CreateChatCompletionStreamResponse",
        CHAT_CHUNKS[1] | {"usage": None},
        "type",
        id="chat-chunk-usage-null",
    ),
    pytest.param("CreateCompletionResponse", broken(COMPLETION, ("choices",)), "required", id="completion-no-choices"),
    pytest.param(
        "CreateCompletionResponse",
        broken(COMPLETION, ("object",), "chat.completion"),
        "enum",
        id="completion-object-chat",
    ),
    pytest.param(
        "CreateCompletionResponse",
        broken(COMPLETION, ("choices", 0, "logprobs")),
        "required",
        id="completion-choice-without-logprobs",
    ),
    # Likewise: the completion object (which the spec says is also the streamed shape) has a non-nullable
    # finish_reason.
    pytest.param(
        "CreateCompletionResponse",
        broken(COMPLETION, ("choices", 0, "finish_reason"), None),
        "type",
        id="completion-finish-reason-null",
    ),
    pytest.param("ErrorResponse", broken(ERROR, ("error", "param")), "required", id="error-without-param"),
    pytest.param("ErrorResponse", broken(ERROR, ("error", "message"), None), "type", id="error-message-null"),
    pytest.param("ErrorResponse", {"detail": "Not Found"}, "required", id="error-fastapi-default"),
    pytest.param("ListModelsResponse", broken(MODEL_LIST, ("object",), "models"), "enum", id="model-list-object"),
    pytest.param(
        "ListModelsResponse", broken(MODEL_LIST, ("data", 0, "owned_by")), "required", id="model-without-owned-by"
    ),
    pytest.param("Model", broken(MODEL_LIST["data"][0], ("created",), "today"), "type", id="model-created-string"),
]


@pytest.mark.parametrize(("name", "instance", "keyword"), INVALID)
def test_broken_examples_fail(name: str, instance: dict[str, Any], keyword: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validator(name).validate(instance)
    assert caught.value.validator == keyword, caught.value


def test_schema_is_valid_and_self_describing() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert "openai/openai-openapi" in SCHEMA["$comment"] and "openapi.yaml" in SCHEMA["$comment"]
    # Responses' closure is large (Response lists every output item and tool type of the API): ~255 schemas.
    assert SCHEMA_PATH.stat().st_size < 250_000
    names = ["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse"]
    for name in [*names, "Response", "ResponseStreamEvent", "TokenCountsResource"]:
        assert name in SCHEMA["$defs"]
