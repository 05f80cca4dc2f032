"""From a validated request to a running generation: choices planned over upstream calls, options checked.

Shared by chat and completions. `n` choices of one prompt are one upstream call with `num_sequences` where the
upstream can return several sequences (TensorRT-LLM's `num_return_sequences`), otherwise `n` calls with seeds
`seed+i` and request ids `<id>-<i>`. What the upstream can do is checked here, once per request, against the
engine's capabilities: anything asked for that it cannot do is a 400 naming the field.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.choices import Choice, ChoiceRun, UpstreamPlan
from gateway.core.events import ChoiceEvent
from gateway.core.processors import Processor, stop_chain
from gateway.core.served_model import ServedModel
from gateway.engine.base import EngineCapabilities, GenerationRequest
from gateway.errors import InvalidRequestError, UnsupportedFeatureError, UpstreamUnavailableError
from gateway.protocols.chat_completions.encode import CollectedChoice, collect

SEED_SPACE = 1 << 63


class Encoder(Protocol):
    """What an endpoint's encoder offers the drivers below."""

    def opening(self, choices: list[Choice]) -> list[bytes]:
        """Chunks before any output."""
        ...

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[bytes]:
        """Chunks for one choice's events."""
        ...

    def closing(self, run: ChoiceRun) -> list[bytes]:
        """Chunks after every choice ended."""
        ...

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The whole body of a non-streamed response."""
        ...


@dataclass
class Generation:
    """A request ready to run: its choices and how to encode them."""

    run: ChoiceRun
    encoder: Encoder
    stream: bool


@dataclass(frozen=True)
class OutputOptions:
    """What the client asked to get back besides text."""

    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: bool = False
    top_logprobs_param: str = "top_logprobs"  # the field that asked for alternatives (completions: logprobs)


def capabilities_of(model: ServedModel) -> EngineCapabilities:
    """The engine's capabilities, or 503 while its model is not known yet."""
    capabilities = model.engine.capabilities()
    if capabilities is None:
        raise UpstreamUnavailableError(f"the upstream model of '{model.name}' is not ready")
    return capabilities


def check_output_options(options: OutputOptions, model: ServedModel, capabilities: EngineCapabilities) -> None:
    """400 naming the field for what the model or its upstream cannot return."""
    if options.n > model.max_n:
        raise InvalidRequestError(
            f"n is too large: {options.n}. This gateway returns at most {model.max_n} choices per request (--max-n).",
            param="n",
            code="invalid_value",
        )
    if options.top_logprobs and not options.logprobs:
        raise InvalidRequestError("top_logprobs needs logprobs to be true", param="top_logprobs")
    if (options.logprobs or options.prompt_logprobs) and not capabilities.logprobs:
        raise UnsupportedFeatureError(
            f"model '{model.name}' cannot return log-probabilities: its Triton model does not declare "
            "return_log_probs / output_log_probs",
            param="logprobs",
        )
    if options.top_logprobs > 0 and not capabilities.top_logprobs:
        raise UnsupportedFeatureError(
            "TensorRT-LLM returns only the chosen token's log-probability; top_logprobs > 0 needs the generation "
            "logits: call tensorrt_llm directly (--triton-model tensorrt_llm) on an engine built with "
            "--gather_generation_logits, and start the gateway with --engine-logits",
            param=options.top_logprobs_param,
        )
    if options.prompt_logprobs and not capabilities.prompt_logprobs:
        raise UnsupportedFeatureError(
            "echo with logprobs needs the prompt's logits: call tensorrt_llm directly (--triton-model "
            "tensorrt_llm) on an engine built with --gather_context_logits, and start the gateway with "
            "--engine-logits",
            param="echo",
        )


def plan_prompt(
    base: GenerationRequest,
    options: OutputOptions,
    capabilities: EngineCapabilities,
    model: ServedModel,
    prompt_index: int,
    first_choice: int,
    chain_for: Callable[[GenerationRequest], list[Processor]] = stop_chain,
) -> list[UpstreamPlan]:
    """The upstream calls for `options.n` choices of one prompt, numbered from `first_choice`."""
    base = dataclasses.replace(
        base,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
        prompt_logprobs=options.prompt_logprobs,
    )
    n = options.n
    if n == 1 or capabilities.return_sequences:
        request = dataclasses.replace(base, num_sequences=n) if n > 1 else base
        choices = [Choice(first_choice + i, prompt_index, request, model.counter, chain_for(request)) for i in range(n)]
        return [UpstreamPlan(request, choices)]
    seed = base.sampling.seed if base.sampling.seed is not None else secrets.randbelow(SEED_SPACE)
    plans = []
    for i in range(n):
        sampling = dataclasses.replace(base.sampling, seed=(seed + i) % (1 << 64))
        request = dataclasses.replace(base, request_id=f"{base.request_id}-{i}", sampling=sampling)
        plans.append(UpstreamPlan(request, [Choice(first_choice + i, prompt_index, request, model.counter,
                                                    chain_for(request))]))  # fmt: skip
    return plans


async def stream_chunks(generation: Generation) -> AsyncGenerator[list[bytes], None]:
    """The JSON chunks of a streamed response, a list per write. Nothing is produced before the first output
    (or the first failure) arrives, so a refusal can still get its own status code."""
    run, encoder = generation.run, generation.encoder
    batches = run.events()
    try:
        first = await anext(batches, None)
        opening = encoder.opening(run.choices)
        yield opening + encoder.chunks(*first) if first is not None else opening
        async for choice, events in batches:
            yield encoder.chunks(choice, events)
        closing = encoder.closing(run)
        if closing:
            yield closing
    finally:
        await batches.aclose()


async def respond(generation: Generation) -> dict[str, Any]:
    """The body of a non-streamed response (every choice run to its end)."""
    collected = await collect(generation.run)
    return generation.encoder.response(generation.run, collected)
