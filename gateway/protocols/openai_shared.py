"""OpenAI request bodies (pydantic, validated once per request; responses are plain dicts built elsewhere).

Unknown fields are ignored, as api.openai.com clients expect from compatible servers. Known fields the gateway
cannot honour yet are declared loosely here and refused with a 400 naming them in `unsupported_fields`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic import StrictStr as _StrictStr

from gateway.errors import UnsupportedFeatureError

MAX_STOP_SEQUENCES = 16
MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs (legacy completions allow 5; vLLM-style clients send more)
INT32_MAX = 2**31 - 1  # top_k and min_tokens travel as INT32 tensors


def _encodable(text: str) -> str:
    """Lone surrogates (JSON escapes like \\ud800) are valid JSON but cannot become UTF-8: refuse them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the string contains a lone surrogate (invalid Unicode)") from None
    return text


def _encodable_tree(value: Any) -> Any:
    """Every string inside a free-form JSON value (e.g. `tool_calls`) must be encodable too."""
    if isinstance(value, str):
        _encodable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _encodable_tree(key)
            _encodable_tree(item)
    elif isinstance(value, list):
        for item in value:
            _encodable_tree(item)
    return value


StrictStr = Annotated[_StrictStr, AfterValidator(_encodable)]
# Numbers as JSON numbers only (no "1" strings); an int is a valid float, a float is not a valid int.
Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True)]
NonEmptyStr = Annotated[_StrictStr, Field(min_length=1), AfterValidator(_encodable)]


class OpenAIModel(BaseModel):
    """Base: ignore unknown fields, keep the declared ones."""

    model_config = ConfigDict(extra="ignore")


class TextContentPart(OpenAIModel):
    """`{"type": "text", "text": ...}` content part."""

    type: Literal["text"]
    text: StrictStr


class OtherContentPart(OpenAIModel):
    """A non-text content part (image, audio, file): accepted by the schema, refused with a clear message."""

    type: Literal["image_url", "input_audio", "file", "refusal"]


ContentPart = Annotated[TextContentPart | OtherContentPart, Field(discriminator="type")]


class ChatMessage(OpenAIModel):
    """One message of a conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: Annotated[list[dict[str, Any]], AfterValidator(_encodable_tree)] | None = None
    tool_call_id: StrictStr | None = None


class StreamOptions(OpenAIModel):
    """`stream_options`."""

    include_usage: StrictBool = False


class SamplingFields(OpenAIModel):
    """Fields shared by chat and completions requests."""

    model: StrictStr
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    temperature: Annotated[Float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Float, Field(ge=0, le=1)] | None = None
    n: Annotated[Int, Field(ge=1, le=128)] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: Annotated[Int, Field(ge=-(2**63), lt=2**64)] | None = None
    presence_penalty: Annotated[Float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Float, Field(ge=-2, le=2)] | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None
    # Extensions that vLLM-style clients send at top level.
    top_k: Annotated[Int, Field(ge=-1, le=INT32_MAX)] | None = None
    min_tokens: Annotated[Int, Field(ge=0, le=INT32_MAX)] | None = None
    repetition_penalty: Annotated[Float, Field(gt=0, le=10)] | None = None
    ignore_eos: StrictBool | None = None
    # Known, not honoured yet: refused when set to a non-default value.
    logit_bias: Any = None
    best_of: Any = None


class ChatCompletionRequest(SamplingFields):
    """Body of POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[Int, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    # Checked where they are used (openai/tools.py, openai/guides.py), with errors naming the exact place.
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


class CompletionRequest(SamplingFields):
    """Body of POST /v1/completions."""

    prompt: NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1, max_length=64)]
    echo: StrictBool | None = False
    # The legacy form: how many alternatives per position (0 = the chosen tokens only); false means off.
    logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | Literal[False] | None = None
    suffix: Any = None


def _is_set(value: Any) -> bool:
    return value not in (None, False, [], {}, "")


def unsupported_fields(request: SamplingFields) -> None:
    """Raise UnsupportedFeatureError for the first known field whose value the gateway cannot honour."""
    if request.best_of not in (None, 1, request.n or 1):
        raise UnsupportedFeatureError("best_of other than n is not supported (choices are not ranked)", param="best_of")
    checks: dict[str, Any] = {"logit_bias": request.logit_bias}
    if isinstance(request, ChatCompletionRequest):
        checks |= {
            "functions": request.functions,
            "function_call": request.function_call,
            "audio": request.audio,
            "prediction": request.prediction,
            "reasoning_effort": request.reasoning_effort,
            "web_search_options": request.web_search_options,
        }
        if request.modalities not in (None, ["text"]):
            checks["modalities"] = request.modalities
    elif isinstance(request, CompletionRequest):
        checks["suffix"] = request.suffix
    for name, value in checks.items():
        if _is_set(value):
            raise UnsupportedFeatureError(f"'{name}' is not supported by this gateway yet", param=name)
    if request.stream_options is not None and not request.stream:
        raise UnsupportedFeatureError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
