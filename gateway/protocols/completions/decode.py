"""POST /v1/completions in the core's terms: raw prompts (one generation per prompt and choice) and options."""

from __future__ import annotations

from gateway.core.generation import Generation
from gateway.core.planning import TraceHeaders, plan_texts
from gateway.core.request import GenerationOptions, OutputOptions
from gateway.core.served_model import ServedModel
from gateway.protocols.completions.encode import CompletionEncoder
from gateway.protocols.completions.request import CompletionRequest, check_completion_unsupported
from gateway.protocols.openai_shared import ResponseMeta, include_usage, sampling_of, stop_strings

ID_PREFIX = "cmpl"


async def completion_generation(
    body: CompletionRequest, model: ServedModel, request_id: str, trace_headers: TraceHeaders = ()
) -> Generation:
    """Validate what the gateway cannot honour, then plan every prompt's choices and pick the encoder."""
    check_completion_unsupported(body)
    meta = ResponseMeta.new(ID_PREFIX, model, request_id)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    run = plan_texts(prompts, completion_options(body), model, meta.id, trace_headers)
    encoder = CompletionEncoder(meta, include_usage(body), echo=bool(body.echo))
    return Generation(run, encoder, bool(body.stream))


def completion_options(body: CompletionRequest) -> GenerationOptions:
    """The generation options; the legacy `logprobs` is a count of alternatives (0: the chosen tokens only)."""
    wanted = body.logprobs is not None and body.logprobs is not False
    output = OutputOptions(
        n=body.n or 1,
        logprobs=wanted,
        top_logprobs=body.logprobs or 0,
        prompt_logprobs=bool(body.echo) and wanted,
        top_logprobs_param="logprobs",
    )
    return GenerationOptions(
        max_tokens=body.max_tokens,
        sampling=sampling_of(body),
        stop=stop_strings(body),
        stream=bool(body.stream),
        output=output,
    )
