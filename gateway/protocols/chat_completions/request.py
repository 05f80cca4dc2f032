"""The body of POST /v1/chat/completions (pydantic, validated once per request), and the fields it refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool

from gateway.protocols.openai_shared import (
    MAX_TOP_LOGPROBS,
    Int,
    NonEmptyStr,
    OpenAIModel,
    SamplingFields,
    StrictStr,
    check_unsupported,
    encodable_tree,
)


class TextContentPart(OpenAIModel):
    """`{"type": "text", "text": ...}` content part."""

    type: Literal["text"]
    text: StrictStr


class ImageUrl(OpenAIModel):
    """An image part's `image_url`: a `data:` or http(s) URL, and the detail asked for."""

    url: NonEmptyStr
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlContentPart(OpenAIModel):
    """`{"type": "image_url", "image_url": {"url": ..., "detail": ...}}` (a bare URL string is taken too)."""

    type: Literal["image_url"]
    image_url: ImageUrl | NonEmptyStr


class OtherContentPart(OpenAIModel):
    """A content part the gateway does not take (audio, file, refusal): accepted by the schema, refused with a
    clear message."""

    type: Literal["input_audio", "file", "refusal"]


ContentPart = Annotated[TextContentPart | ImageUrlContentPart | OtherContentPart, Field(discriminator="type")]


class ChatMessage(OpenAIModel):
    """One message of a conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: Annotated[list[dict[str, Any]], AfterValidator(encodable_tree)] | None = None
    tool_call_id: StrictStr | None = None


class ChatCompletionRequest(SamplingFields):
    """Body of POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[Int, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    # Checked where they are used (chat_completions/tools.py and guides.py), with errors naming the exact place.
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    response_format: Any = None
    structured_outputs: Any = None  # vLLM's: json, regex, choice, grammar
    guided_json: Any = None  # vLLM's older spelling of the same
    guided_regex: Any = None
    guided_choice: Any = None
    guided_grammar: Any = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None


def check_chat_unsupported(request: ChatCompletionRequest) -> None:
    """400 for the first known field whose value the gateway cannot honour."""
    checks: dict[str, Any] = {
        "functions": request.functions,
        "function_call": request.function_call,
        "audio": request.audio,
        "prediction": request.prediction,
        "reasoning_effort": request.reasoning_effort,
        "web_search_options": request.web_search_options,
    }
    if request.modalities not in (None, ["text"]):
        checks["modalities"] = request.modalities
    check_unsupported(request, checks)
