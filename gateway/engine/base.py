"""What the OpenAI layer asks of an engine, and what it gets back: engine-neutral, no HTTP, no tensors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
class GenerationRequest:
    """One prompt to complete. `request_id` is unique and is sent to Triton as the request id."""

    request_id: str
    prompt: str
    max_tokens: int
    stream: bool
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    trace_headers: tuple[tuple[str, str], ...] = ()  # W3C trace context for the upstream call


@dataclass(slots=True)
class Delta:
    """A piece of generated output.

    `text` is new text (never cumulative). `completion_tokens` counts the tokens of this piece when the engine
    knows it (else None); `prompt_tokens` is set once the engine knows it. The last delta of a generation has
    `finish_reason` set.
    """

    text: str
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: FinishReason | None = None

    def extend(self, later: Delta) -> None:
        """Append the piece that follows this one (several responses sent as one)."""
        self.text += later.text
        if self.completion_tokens is None or later.completion_tokens is None:
            self.completion_tokens = None  # not counted by the engine
        else:
            self.completion_tokens += later.completion_tokens
        if self.prompt_tokens is None:
            self.prompt_tokens = later.prompt_tokens


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

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream the output of one request; the last delta carries the finish reason."""
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

    def abort_all(self, error: GatewayError) -> int:
        """End every running generation with `error`, stopping its upstream work; returns how many."""
        ...
