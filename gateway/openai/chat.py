"""POST /v1/chat/completions semantics: messages -> prompt, fields -> GenerationRequest, choices planned."""

from __future__ import annotations

from typing import Any

from gateway.engine.base import GenerationRequest, SamplingParams
from gateway.openai.agents import parser_chain, plan_agent, with_guide
from gateway.openai.choices import ChoiceRun
from gateway.openai.encoders import ChatEncoder
from gateway.openai.generation import (
    Generation,
    OutputOptions,
    capabilities_of,
    check_output_options,
    plan_prompt,
)
from gateway.openai.protocol import ChatCompletionRequest, SamplingFields, unsupported_fields
from gateway.openai.served_model import ResponseMeta, ServedModel
from gateway.openai.tokens import message_text
from gateway.openai.tools import template_tool_calls

# Temperatures this small divide logits into infinities; they mean greedy decoding (vLLM draws the same line).
GREEDY_BELOW = 1e-5


def sampling_params(body: SamplingFields) -> SamplingParams:
    """The sampling fields of a chat or completions request, with OpenAI's defaults made explicit.

    TensorRT-LLM decodes greedily when neither top_k nor top_p is set, whatever the temperature, while OpenAI
    samples by default (temperature 1, top_p 1). So: temperature 0 is sent as top_k=1 (no temperature, which
    some engine versions refuse at 0), and a sampling request without top_k/top_p gets top_p=1.0.
    """
    top_k = body.top_k if body.top_k is not None and body.top_k > 0 else None  # 0 and -1 mean "off" (vLLM)
    temperature, top_p = body.temperature, body.top_p
    if temperature is not None and temperature < GREEDY_BELOW:
        temperature, top_k, top_p = None, 1, None
    elif top_k is None and top_p is None:
        top_p = 1.0
    return SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
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


def render_messages(body: ChatCompletionRequest, model: ServedModel, tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt: messages (and tool definitions) rendered with the chat template."""
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(body.messages):
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        role = "system" if message.role == "developer" else message.role
        rendered: dict[str, Any] = {"role": role, "content": message_text(message.content, index)}
        if message.name is not None:
            rendered["name"] = message.name
        if message.tool_calls:
            rendered["tool_calls"] = template_tool_calls(message.tool_calls, index)
        if message.tool_call_id is not None:
            rendered["tool_call_id"] = message.tool_call_id
        messages.append(rendered)
    return model.chat_template.render(messages, tools)


async def chat_generation(
    body: ChatCompletionRequest,
    model: ServedModel,
    meta: ResponseMeta,
    trace_headers: tuple[tuple[str, str], ...] = (),
) -> Generation:
    """Validate what the gateway cannot honour, build the engine request and plan the choices."""
    unsupported_fields(body)
    capabilities = capabilities_of(model)
    options = OutputOptions(n=body.n or 1, logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0)
    check_output_options(options, model, capabilities)
    agent = await plan_agent(body, model, capabilities)
    requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    prompt = render_messages(body, model, agent.template_tools(body))
    model.check_prompt_length(prompt, "messages")
    base = GenerationRequest(
        request_id=meta.id,
        prompt=prompt,
        max_tokens=model.resolve_max_tokens(requested),
        stream=bool(body.stream),
        sampling=sampling_params(body),
        stop=stop_strings(body),
        trace_headers=trace_headers,
        keep_special_tokens=agent.keep_special_tokens,
    )
    base = with_guide(base, agent)
    plans = plan_prompt(base, options, capabilities, model, 0, 0, parser_chain(agent, model))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Generation(ChoiceRun(model.engine, plans), ChatEncoder(meta, include_usage), bool(body.stream))
