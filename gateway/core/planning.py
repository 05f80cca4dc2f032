"""From a decoded request to running choices: options checked, prompts rendered, choices planned over upstream calls.

`n` choices of one prompt are one upstream call with `num_sequences` where the upstream can return several
sequences (TensorRT-LLM's `num_return_sequences`), otherwise `n` calls with seeds `seed+i` and request ids
`<id>-<i>`. What the upstream can do is checked here, once per request, against the engine's capabilities:
anything asked for that it cannot do is a 400 naming the protocol's field.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Sequence

from gateway.core.agents import parser_chain, plan_agent, with_guide
from gateway.core.choices import Choice, ChoiceRun, UpstreamPlan
from gateway.core.images import check_image_count
from gateway.core.processors import Processor, stop_chain
from gateway.core.prompt import check_image_placeholders
from gateway.core.request import ConversationRequest, GenerationOptions, OutputOptions
from gateway.core.served_model import ServedModel
from gateway.core.tools import check_tool_history, check_tools, template_tools
from gateway.core.truncation import fitted_conversation, fitted_prompt
from gateway.engine.base import EncodedImage, EngineCapabilities, GenerationRequest
from gateway.errors import InvalidRequestError, UnsupportedFeatureError, UpstreamUnavailableError
from gateway.telemetry import current_request

SEED_SPACE = 1 << 63
TraceHeaders = tuple[tuple[str, str], ...]


async def plan_conversation(
    request: ConversationRequest, model: ServedModel, request_id: str, trace_headers: TraceHeaders = ()
) -> ChoiceRun:
    """Check what the model cannot do, render the prompt and plan the choices (the engine's request id is
    `request_id`, suffixed per call when the choices take several)."""
    capabilities = capabilities_of(model)
    options = request.options
    check_output_options(options.output, model, capabilities)
    conversation = request.conversation
    image_parts = conversation.images()
    check_image_count(image_parts, model.images.limits.max_per_request, model.name, capabilities.max_images)
    agent = await plan_agent(request, model, capabilities)
    prompt, kept = fitted_conversation(conversation, model, agent.template_tools(), request.reasoning)
    if kept is not conversation:  # truncated: the images of the dropped turns are not sent
        image_parts = kept.images()
    if capabilities.max_images:
        check_image_placeholders(prompt, model.image_placeholder, len(image_parts), conversation.param)
    images = await model.images.load(image_parts) if image_parts else ()
    engine_request = _engine_request(
        request_id, prompt, options, model, trace_headers, agent.keep_special_tokens, images
    )
    base = with_guide(engine_request, agent)
    plans = plan_prompt(base, options.output, capabilities, model, 0, 0, parser_chain(agent, model))
    return ChoiceRun(model.engine, plans)


async def count_prompt_tokens(request: ConversationRequest, model: ServedModel) -> int:
    """The tokens of the prompt `plan_conversation` would render for the request (its tools and history checked,
    truncated as it asks, not refused when too long; nothing about the output is checked: nothing runs). Images
    are checked against what the model takes, not read: their tokens are the engine's to count."""
    image_parts = request.conversation.images()
    if image_parts:
        max_images = capabilities_of(model).max_images
        check_image_count(image_parts, model.images.limits.max_per_request, model.name, max_images)
    checker = model.guide_checker
    checks = check_tools(request.tools, checker)
    check_tool_history(request.conversation)
    await checker.run(checks)
    prompt = fitted_prompt(
        request.conversation, model, template_tools(request.tools), request.reasoning, refuse_overlong=False
    )
    return model.counter.count(prompt)


def plan_texts(
    prompts: Sequence[str],
    options: GenerationOptions,
    model: ServedModel,
    request_id: str,
    trace_headers: TraceHeaders = (),
    param: str = "prompt",
) -> ChoiceRun:
    """Plan every raw prompt's choices: choice `p * n + i` is the i-th choice of prompt p (OpenAI's order);
    request ids are `request_id`, suffixed by the prompt index when there are several prompts."""
    capabilities = capabilities_of(model)
    check_output_options(options.output, model, capabilities)
    for prompt in prompts:
        model.check_prompt_length(prompt, param)
    n = options.output.n
    plans = []
    for index, prompt in enumerate(prompts):
        call_id = request_id if len(prompts) == 1 else f"{request_id}-{index}"
        base = _engine_request(call_id, prompt, options, model, trace_headers)
        plans += plan_prompt(base, options.output, capabilities, model, prompt_index=index, first_choice=index * n)
    return ChoiceRun(model.engine, plans)


def _engine_request(
    request_id: str,
    prompt: str,
    options: GenerationOptions,
    model: ServedModel,
    trace_headers: TraceHeaders,
    keep_special_tokens: bool = False,
    images: tuple[EncodedImage, ...] = (),
) -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id,
        prompt=prompt,
        max_tokens=model.resolve_max_tokens(options.max_tokens, options.max_tokens_param),
        stream=options.stream,
        sampling=options.sampling.for_engine(),
        stop=options.stop,
        trace_headers=trace_headers,
        keep_special_tokens=keep_special_tokens,
        images=images,
        priority=_key_priority(),
    )


def _key_priority() -> float | None:
    """The engine priority the request's API key gives it (the api layer puts it in the request context)."""
    context = current_request()
    return context.priority if context is not None else None


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
        raise InvalidRequestError(
            f"{options.top_logprobs_param} needs {options.logprobs_param} to be true", param=options.top_logprobs_param
        )
    if (options.logprobs or options.prompt_logprobs) and not capabilities.logprobs:
        raise UnsupportedFeatureError(
            f"model '{model.name}' cannot return log-probabilities: its Triton model does not declare "
            "return_log_probs / output_log_probs",
            param=options.logprobs_param,
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
            param=options.prompt_logprobs_param,
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
