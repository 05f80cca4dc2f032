"""What OpenAI's chat and completions protocols share: field types, sampling fields, ids, usage, chunk prefixes.

Request bodies are pydantic models, validated once per request. Unknown fields are ignored, as api.openai.com
clients expect from compatible servers; known fields the gateway cannot honour yet are declared loosely and refused
with a 400 naming them (`check_unsupported`). Responses are plain dicts, and streamed chunks bytes.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic import StrictStr as _StrictStr

from gateway.core.choices import ChoiceRun
from gateway.core.events import TokenLogprob
from gateway.core.generation import NamedEvent
from gateway.core.request import Sampling
from gateway.core.schema_bounds import json_value_problem
from gateway.core.served_model import ServedModel
from gateway.core.usage import Usage
from gateway.errors import GatewayError, UnsupportedFeatureError

MAX_STOP_SEQUENCES = 16
MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs (legacy completions allow 5; vLLM-style clients send more)
INT32_MAX = 2**31 - 1  # top_k and min_tokens travel as INT32 tensors
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}  # a function tool without parameters
# Decoded tool-call `arguments` nest no deeper than a request body may (pydantic refuses bodies ~200 levels deep).
MAX_ARGUMENTS_DEPTH = 200
TOOL_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,64}")  # a function tool's name
SCHEMA_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # a json_schema output format's name


def _encodable(text: str) -> str:
    """Lone surrogates (JSON escapes like \\ud800) are valid JSON but cannot become UTF-8: refuse them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the string contains a lone surrogate (invalid Unicode)") from None
    return text


def encodable_tree(value: Any) -> Any:
    """Every string inside a free-form JSON value (e.g. `tool_calls`) must be encodable too."""
    if isinstance(value, str):
        _encodable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            encodable_tree(key)
            encodable_tree(item)
    elif isinstance(value, list):
        for item in value:
            encodable_tree(item)
    return value


StrictStr = Annotated[_StrictStr, AfterValidator(_encodable)]
# Numbers as JSON numbers only (no "1" strings); an int is a valid float, a float is not a valid int.
Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True)]
NonEmptyStr = Annotated[_StrictStr, Field(min_length=1), AfterValidator(_encodable)]


class OpenAIModel(BaseModel):
    """Base: ignore unknown fields, keep the declared ones."""

    model_config = ConfigDict(extra="ignore")


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


def _is_set(value: Any) -> bool:
    return value not in (None, False, [], {}, "")


def refuse_set(checks: dict[str, Any]) -> None:
    """UnsupportedFeatureError for the first of these known fields (name -> value) that is set."""
    for name, value in checks.items():
        if _is_set(value):
            raise UnsupportedFeatureError(f"'{name}' is not supported by this gateway yet", param=name)


def check_unsupported(request: SamplingFields, checks: dict[str, Any]) -> None:
    """Raise UnsupportedFeatureError for the first known field whose value the gateway cannot honour: the shared
    ones, then the endpoint's own `checks` (field name -> value)."""
    if request.best_of not in (None, 1, request.n or 1):
        raise UnsupportedFeatureError("best_of other than n is not supported (choices are not ranked)", param="best_of")
    refuse_set({"logit_bias": request.logit_bias} | checks)
    if request.stream_options is not None and not request.stream:
        raise UnsupportedFeatureError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )


def decode_arguments(text: str) -> Any:
    """A replayed tool call's `arguments` string decoded (blank: an empty object); None when it is not JSON."""
    try:
        return json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):
        return None


def arguments_problem(arguments: dict[str, Any]) -> str | None:
    """What makes decoded arguments unfit for a template (decoded from a string, they were never checked:
    `\\udXXX` escapes and nesting reach the template here), or None."""
    return json_value_problem(arguments, MAX_ARGUMENTS_DEPTH)


def sampling_of(body: SamplingFields) -> Sampling:
    """The request's sampling values in the core's terms."""
    return Sampling(
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
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


def include_usage(body: SamplingFields) -> bool:
    """Whether a streamed response ends with a usage chunk (`stream_options.include_usage`)."""
    return bool(body.stream_options and body.stream_options.include_usage)


# ---- response objects ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """The fields every response and chunk of one request shares."""

    id: str
    created: int
    model: str
    system_fingerprint: str

    @classmethod
    def new(cls, prefix: str, model: ServedModel, request_id: str) -> ResponseMeta:
        """Response id `<prefix>-<request id>-<8 hex>` (the suffix keeps Triton ids unique when clients reuse
        an X-Request-Id) and timestamp."""
        unique = f"{prefix}-{request_id}-{uuid.uuid4().hex[:8]}"
        return cls(unique, int(time.time()), model.name, model.fingerprint)

    def head(self, obj: str) -> dict[str, object]:
        """The leading fields of a response or chunk object."""
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }


def usage_json(usage: Usage) -> dict[str, object]:
    """OpenAI `usage` object (`prompt_tokens_details.cached_tokens` when the engine reports reuse)."""
    usage_object: dict[str, object] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens is not None:
        usage_object["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return usage_object


# OpenAI reports tokens the sampler could never pick (masked to -inf) as -9999.0; JSON has no -Infinity.
FLOOR_LOGPROB = -9999.0


def floored_logprob(value: float | None) -> float | None:
    """A log-probability as OpenAI reports it (never below FLOOR_LOGPROB)."""
    if value is None:
        return None
    return value if value > FLOOR_LOGPROB else FLOOR_LOGPROB


def token_logprob(item: TokenLogprob) -> dict[str, Any]:
    """A token's log-probability with bytes and alternatives: chat's ChatCompletionTokenLogprob, and what a
    Responses `output_text` part carries."""
    return {
        "token": item.token,
        "logprob": floored_logprob(item.logprob) if item.logprob is not None else FLOOR_LOGPROB,
        "bytes": list(item.token_bytes),
        "top_logprobs": [
            {"token": top.token, "logprob": floored_logprob(top.logprob), "bytes": list(top.token_bytes)}
            for top in item.top
        ],
    }


class ChunkEncoder:
    """What the chat and completions encoders share: per-choice chunk prefixes, the usage chunk, the failure
    event. Chunks are built from byte prefixes precomputed per choice plus `orjson.dumps` of the new values: no
    pydantic and no dict per token."""

    def __init__(self, meta: ResponseMeta, chunk_object: str, include_usage: bool) -> None:
        self.meta = meta
        self._chunk_object = chunk_object
        self._head = orjson.dumps(meta.head(chunk_object))[:-1] + b',"choices":['
        self.usage_null = b',"usage":null}' if include_usage else b"}"
        self._include_usage = include_usage
        self._prefixes: dict[int, bytes] = {}

    def closing(self, run: ChoiceRun) -> list[bytes]:
        """The usage chunk, when asked for."""
        if not self._include_usage:
            return []
        head = orjson.dumps(self.meta.head(self._chunk_object))[:-1]
        return [head + b',"choices":[],"usage":' + orjson.dumps(usage_json(run.usage())) + b"}"]

    def failure(self, error: GatewayError, body: bytes) -> list[NamedEvent]:
        """An `error` event with the error body."""
        return [(b"error", body)]

    def prefix(self, index: int) -> bytes:
        """The constant start of a chunk of choice `index` (built once per choice)."""
        prefix = self._prefixes.get(index)
        if prefix is None:
            prefix = self._prefixes[index] = self._head + b'{"index":' + str(index).encode() + b","
        return prefix
