"""What the OpenAI layer asks of an engine, and what it gets back: engine-neutral, no HTTP, no tensors."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.errors import GatewayError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling controls; None means "the engine's default"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    min_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class LoraAdapter:
    """A LoRA adapter to generate with: TensorRT-LLM's task id, and its tensors (engine/lora.py's LoraWeights)
    when they must go with this request."""

    task_id: int
    weights: Any = None


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image to send with a prompt: the file's bytes as fetched and checked, its media type and size; its
    base64 text and SHA-256 digest when computed beforehand (off the event loop: large images take milliseconds)."""

    data: bytes
    media_type: str  # image/png, image/jpeg, ...
    width: int
    height: int
    base64: bytes = b""
    digest: bytes = b""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt to complete. `request_id` is unique and is sent to Triton as the request id.

    `num_sequences` > 1 asks the upstream for that many sequences in one call (TensorRT-LLM's
    `num_return_sequences`); their deltas carry `sequence_index`. `logprobs` asks for the chosen tokens'
    log-probabilities, `top_logprobs` for that many alternatives per position, `prompt_logprobs` for the
    prompt's (echo), `guide_type` / `guide` a guided-decoding constraint, `keep_special_tokens` text with the
    tokenizer's special tokens kept (parser markers such as Mistral's `[TOOL_CALLS]`), `images` the images of the
    prompt in the order of its image placeholders; the engine's capabilities say which of these it can honour.
    `priority` goes to models that declare a `priority` input, else nowhere.
    """

    request_id: str
    prompt: str
    max_tokens: int
    stream: bool
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    trace_headers: tuple[tuple[str, str], ...] = ()  # W3C trace context for the upstream call
    num_sequences: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: bool = False
    guide_type: str | None = None  # guided decoding: json, json_schema, regex, ebnf_grammar
    guide: str | None = None
    lora: LoraAdapter | None = None  # generate with this adapter of the model
    keep_special_tokens: bool = False  # the text keeps special tokens (markers the request's parsers read)
    images: tuple[EncodedImage, ...] = ()
    priority: float | None = None  # TensorRT-LLM's request priority, 0 to 1 (0.5 its default), from the API key


@dataclass(slots=True)
class TopLogprob:
    """One alternative token at a position."""

    token: str
    token_bytes: bytes
    logprob: float


@dataclass(slots=True)
class TokenLogprob:
    """The log-probability of one generated (or prompt) token; `top` holds the alternatives when asked."""

    token: str
    token_bytes: bytes
    logprob: float | None  # None: no value (the first prompt token has no context)
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """What an upstream can do, derived once from the model's declared tensors (and the engine's build)."""

    mode: str
    return_sequences: bool = False  # num_return_sequences in, sequence_index out
    logprobs: bool = False  # return_log_probs in, output_log_probs out
    top_logprobs: bool = False  # generation logits, from which the gateway takes the top k
    prompt_logprobs: bool = False  # context logits, for the prompt's log-probabilities
    exact_stream: bool = True  # streamed text is exact (not so for the ensemble's per-token decoding)
    guided_decoding: bool = False  # guides are enforced: declared inputs and an xgrammar backend configured
    special_tokens: bool = False  # requests may ask for text with special tokens kept (keep_special_tokens)
    max_images: int = 0  # images one request may carry (0: the upstream takes none)


@dataclass(slots=True)
class Delta:
    """A piece of generated output.

    `text` is new text (never cumulative). `completion_tokens` counts the tokens of this piece when the engine
    knows it (else None); `prompt_tokens` is set once the engine knows it. The last delta of each sequence has
    `finish_reason` set. `sequence_index` says which sequence of a `num_sequences` request it belongs to;
    `logprobs` has one entry per token of the piece when asked, `prompt_logprobs` the prompt's (once).
    `cached_tokens` is how many prompt tokens the engine found in its KV cache, when it reports that.
    """

    text: str
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: FinishReason | None = None
    sequence_index: int = 0
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    cached_tokens: int | None = None

    def extend(self, later: Delta) -> None:
        """Append the piece of the same sequence that follows this one (several responses sent as one)."""
        self.text += later.text
        if self.completion_tokens is None or later.completion_tokens is None:
            self.completion_tokens = None  # not counted by the engine
        else:
            self.completion_tokens += later.completion_tokens
        if self.prompt_tokens is None:
            self.prompt_tokens = later.prompt_tokens
        if later.logprobs is not None:
            if self.logprobs is None:
                self.logprobs = later.logprobs
            else:
                self.logprobs.extend(later.logprobs)
        if self.prompt_logprobs is None:
            self.prompt_logprobs = later.prompt_logprobs
        if later.cached_tokens is not None:
            self.cached_tokens = later.cached_tokens


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the engine serves, for /v1/models and /version."""

    upstream: str
    model: str
    ready: bool
    mode: str | None = None  # how the upstream is called (ensemble, bls, direct), once known
    server_version: str | None = None


class Engine(Protocol):
    """A text-generation backend. Closing the iterator early must stop the upstream generation."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream the output of one request; the last delta of each sequence carries its finish reason."""
        ...

    async def start(self) -> None:
        """Connect and discover the upstream; must not fail when the upstream is down (retry in background)."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...

    def info(self) -> EngineInfo:
        """Current readiness and identity."""
        ...

    def capabilities(self) -> EngineCapabilities | None:
        """What the upstream can do; None until its model is known."""
        ...

    def abort_all(self, error: GatewayError) -> int:
        """End every running generation with `error`, stopping its upstream work; returns how many."""
        ...
