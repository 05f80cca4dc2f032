"""POST /v1/chat/completions semantics: request -> GenerationRequest, text -> chunks or a full response."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from gateway.engine.base import GenerationRequest, SamplingParams
from gateway.openai.generation import TextStream
from gateway.openai.protocol import ChatCompletionRequest, SamplingFields, unsupported_fields
from gateway.openai.served_model import ResponseMeta, ServedModel
from gateway.openai.tokens import message_text

DONE = b"data: [DONE]\n\n"
# Temperatures this small divide logits into infinities; they mean greedy decoding (vLLM draws the same line).
GREEDY_BELOW = 1e-5


def sampling_params(body: SamplingFields) -> SamplingParams:
    """The sampling fields of a chat or completions request, with OpenAI's defaults made explicit.

    TensorRT-LLM decodes greedily when neither top_k nor top_p is set, whatever the temperature, while OpenAI
    samples by default (temperature 1, top_p 1). So: temperature 0 is sent as top_k=1 (no temperature, which
    some engine versions refuse at 0), and a sampling request without top_k/top_p gets top_p=1.0.
    """
    top_k = body.top_k if body.top_k is not None and body.top_k > 0 else None  # 0 and -1 mean "off" (vLLM)
    temperature, top_p = body.temperature, body.top_p
    if temperature is not None and temperature < GREEDY_BELOW:
        temperature, top_k, top_p = None, 1, None
    elif top_k is None and top_p is None:
        top_p = 1.0
    return SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=body.seed,
        min_tokens=body.min_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        ignore_eos=bool(body.ignore_eos),
    )


def stop_strings(body: SamplingFields) -> tuple[str, ...]:
    """`stop` as a tuple of non-empty strings."""
    if body.stop is None:
        return ()
    stops = [body.stop] if isinstance(body.stop, str) else body.stop
    return tuple(s for s in stops if s)


def render_messages(body: ChatCompletionRequest, model: ServedModel) -> str:
    """The prompt: messages rendered with the chat template."""
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(body.messages):
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        role = "system" if message.role == "developer" else message.role
        rendered: dict[str, Any] = {"role": role, "content": message_text(message.content, index)}
        if message.name is not None:
            rendered["name"] = message.name
        if message.tool_calls:
            rendered["tool_calls"] = message.tool_calls
        if message.tool_call_id is not None:
            rendered["tool_call_id"] = message.tool_call_id
        messages.append(rendered)
    return model.chat_template.render(messages)


def chat_generation_request(
    body: ChatCompletionRequest,
    model: ServedModel,
    meta: ResponseMeta,
    trace_headers: tuple[tuple[str, str], ...] = (),
) -> GenerationRequest:
    """Validate what the gateway cannot honour and build the engine request."""
    unsupported_fields(body)
    requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    prompt = render_messages(body, model)
    model.check_prompt_length(prompt, "messages")
    return GenerationRequest(
        request_id=meta.id,
        prompt=prompt,
        max_tokens=model.resolve_max_tokens(requested),
        stream=bool(body.stream),
        sampling=sampling_params(body),
        stop=stop_strings(body),
        trace_headers=trace_headers,
    )


async def chat_chunks(stream: TextStream, meta: ResponseMeta, include_usage: bool) -> AsyncGenerator[bytes, None]:
    """SSE events of a streamed chat completion, `[DONE]` included."""
    prefix = meta.chunk_prefix("chat.completion.chunk")
    usage_null = b',"usage":null' if include_usage else b""
    yield (
        prefix + b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
        b'"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
    )
    content_prefix = prefix + b'"choices":[{"index":0,"delta":{"content":'
    content_suffix = b'},"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
    async for piece in stream.pieces():
        yield content_prefix + orjson.dumps(piece) + content_suffix
    finish = orjson.dumps(stream.finish_reason)
    yield (
        prefix + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":' + finish + b"}]" + usage_null
    ) + b"}\n\n"
    if include_usage and stream.usage is not None:
        yield prefix + b'"choices":[],"usage":' + orjson.dumps(stream.usage.to_dict()) + b"}\n\n"
    yield DONE


def chat_response(text: str, stream: TextStream, meta: ResponseMeta) -> dict[str, Any]:
    """The body of a non-streamed chat completion."""
    assert stream.usage is not None
    return meta.head("chat.completion") | {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": stream.finish_reason,
            }
        ],
        "usage": stream.usage.to_dict(),
        "service_tier": "default",
    }
