"""The bodies of POST /v1/responses and POST /v1/responses/input_tokens (pydantic, validated once per request).

Scalars are typed here; `input`, `tools`, `tool_choice` and `text.format` are read where they are used (items.py,
options.py), so that each problem names its exact place (`input[3].call_id`, `tools[1].type`). Unknown fields are
ignored, as for chat; known fields the gateway cannot honour are refused with a 400 naming them, and the fields
that need the store are checked for what cannot go together (`check_stateful`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool

from gateway.errors import InvalidRequestError
from gateway.protocols.openai_shared import (
    MAX_TOP_LOGPROBS,
    Float,
    Int,
    OpenAIModel,
    StrictStr,
    encodable_tree,
    refuse_set,
)

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
FreeJson = Annotated[Any, AfterValidator(encodable_tree)]  # checked where it is read, every string valid Unicode
Metadata = Annotated[
    dict[Annotated[StrictStr, Field(max_length=64)], Annotated[StrictStr, Field(max_length=512)]], Field(max_length=16)
]


class ReasoningConfig(OpenAIModel):
    """`reasoning`: the effort (to templates that take it) and a summary (accepted; none is written)."""

    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextConfig(OpenAIModel):
    """`text`: the output format (options.py reads it) and the verbosity (accepted and echoed)."""

    format: FreeJson = None
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(OpenAIModel):
    """`stream_options`."""

    include_obfuscation: StrictBool | None = None


class InputFields(OpenAIModel):
    """What a response and an input-token count share: the conversation, its tools and how it is rendered."""

    input: FreeJson = None
    instructions: StrictStr | None = None
    tools: FreeJson = None
    tool_choice: FreeJson = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    previous_response_id: StrictStr | None = None
    conversation: FreeJson = None


class InputTokensRequest(InputFields):
    """Body of POST /v1/responses/input_tokens (the model may be left out when the gateway serves one)."""

    model: StrictStr | None = None


class ResponsesRequest(InputFields):
    """Body of POST /v1/responses."""

    model: StrictStr
    max_output_tokens: Annotated[Int, Field(ge=1)] | None = None
    max_tool_calls: Annotated[Int, Field(ge=1)] | None = None  # counts built-in tool calls: there are none here
    temperature: Annotated[Float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Float, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    include: list[StrictStr] | None = None
    metadata: Metadata | None = None
    user: StrictStr | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=64)] | None = None
    prompt_cache_key: StrictStr | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    store: StrictBool | None = None
    background: StrictBool | None = None
    # Known, not honoured: refused when set.
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None
    prompt_cache_retention: Any = None
    prompt_cache_options: Any = None
    background_options: Any = None
    image: Any = None
    access_programs: Any = None


def check_unsupported(body: ResponsesRequest) -> None:
    """400 for the first known field whose value the gateway cannot honour."""
    obfuscation = body.stream_options.include_obfuscation if body.stream_options is not None else None
    refuse_set(
        {
            "prompt": body.prompt,
            "context_management": body.context_management,
            "moderation": body.moderation,
            "prompt_cache_retention": body.prompt_cache_retention,
            "prompt_cache_options": body.prompt_cache_options,
            "background_options": body.background_options,
            "image": body.image,
            "access_programs": body.access_programs,
            "stream_options.include_obfuscation": obfuscation,
        }
    )
    if body.stream_options is not None and not body.stream:
        raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true", param="stream_options")


def check_stateful(body: InputFields) -> None:
    """400 for stateful fields that cannot go together: background runs need the store, and a conversation is
    continued either by `previous_response_id` or by `conversation`."""
    if isinstance(body, ResponsesRequest) and body.background and body.store is False:
        raise InvalidRequestError(
            "'background' responses are stored (clients fetch them later): remove 'store: false'", param="background"
        )
    if body.previous_response_id is not None and body.conversation is not None:
        raise InvalidRequestError(
            "'previous_response_id' and 'conversation' cannot both be set: a response continues one or the other",
            param="conversation",
        )
