"""POST /v1/completions semantics: one generation per prompt (and choice), choices indexed prompt by prompt."""

from __future__ import annotations

from gateway.engine.base import GenerationRequest
from gateway.openai.chat import sampling_params, stop_strings
from gateway.openai.choices import ChoiceRun
from gateway.openai.encoders import CompletionEncoder
from gateway.openai.generation import (
    Generation,
    OutputOptions,
    capabilities_of,
    check_output_options,
    plan_prompt,
)
from gateway.openai.protocol import CompletionRequest, unsupported_fields
from gateway.openai.served_model import ResponseMeta, ServedModel


async def completion_generation(
    body: CompletionRequest, model: ServedModel, meta: ResponseMeta, trace_headers: tuple[tuple[str, str], ...] = ()
) -> Generation:
    """Plan every prompt's choices: choice `p * n + i` is the i-th choice of prompt p (OpenAI's order); request
    ids are the response id, suffixed by the prompt index when there are several prompts."""
    unsupported_fields(body)
    capabilities = capabilities_of(model)
    wanted = body.logprobs is not None and body.logprobs is not False
    top = body.logprobs or 0
    options = OutputOptions(
        n=body.n or 1,
        logprobs=wanted,
        top_logprobs=top,
        prompt_logprobs=bool(body.echo) and wanted,
        top_logprobs_param="logprobs",
    )
    check_output_options(options, model, capabilities)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    for prompt in prompts:
        model.check_prompt_length(prompt, "prompt")
    max_tokens = model.resolve_max_tokens(body.max_tokens)
    sampling = sampling_params(body)
    stops = stop_strings(body)
    plans = []
    for index, prompt in enumerate(prompts):
        base = GenerationRequest(
            request_id=meta.id if len(prompts) == 1 else f"{meta.id}-{index}",
            prompt=prompt,
            max_tokens=max_tokens,
            stream=bool(body.stream),
            sampling=sampling,
            stop=stops,
            trace_headers=trace_headers,
        )
        plans += plan_prompt(base, options, capabilities, model, prompt_index=index, first_choice=index * options.n)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    encoder = CompletionEncoder(meta, include_usage, echo=bool(body.echo))
    return Generation(ChoiceRun(model.engine, plans), encoder, bool(body.stream))
