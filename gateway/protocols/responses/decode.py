"""POST /v1/responses and /v1/responses/input_tokens in the core's terms: items -> a conversation, fields ->
options, tools, output constraint, reasoning; then the planned generation with the Responses encoder."""

from __future__ import annotations

from gateway.core.generation import Generation
from gateway.core.planning import TraceHeaders, count_prompt_tokens, plan_conversation
from gateway.core.request import (
    ConversationRequest,
    GenerationOptions,
    OutputConstraint,
    OutputOptions,
    Sampling,
    ToolOptions,
)
from gateway.core.served_model import ServedModel
from gateway.protocols.responses.encode import ResponsesEncoder
from gateway.protocols.responses.items import conversation_of
from gateway.protocols.responses.options import (
    Includes,
    output_constraint,
    parse_include,
    parse_tool_choice,
    parse_tools,
    reasoning_options,
)
from gateway.protocols.responses.output import new_id
from gateway.protocols.responses.request import (
    InputFields,
    InputTokensRequest,
    ResponsesRequest,
    check_stateful,
    check_unsupported,
)
from gateway.protocols.responses.response import response_head
from gateway.protocols.responses.stored import NO_HISTORY, History
from gateway.protocols.sealing import Sealer


async def responses_generation(
    body: ResponsesRequest,
    model: ServedModel,
    request_id: str,
    trace_headers: TraceHeaders = (),
    *,
    sealer: Sealer,
    history: History = NO_HISTORY,
) -> Generation:
    """Refuse what cannot be honoured, then plan the response (after the stored `history`: what
    `previous_response_id` or `conversation` brings in) and its encoder. The response id (`resp_...`) is also the
    engine's request id; the request's own id stays in the access line."""
    check_unsupported(body)
    check_stateful(body)
    request, includes = decode_response(body, sealer, history)
    response_id = new_id("resp")
    run = await plan_conversation(request, model, response_id, trace_headers)
    head = response_head(body, response_id, model.name, request.tools.specs)
    return Generation(run, ResponsesEncoder(head, model.counter, includes, sealer), bool(body.stream))


def decode_response(
    body: ResponsesRequest, sealer: Sealer, history: History = NO_HISTORY
) -> tuple[ConversationRequest, Includes]:
    """The request in the core's terms, and what `include` adds to the output."""
    asked = parse_include(body.include)
    top_logprobs = body.top_logprobs or 0
    # top_logprobs alone asks for log-probabilities too (the Agents SDK sends both; a bare count would be ignored).
    includes = Includes(asked.logprobs or top_logprobs > 0, asked.encrypted_reasoning)
    output = OutputOptions(
        logprobs=includes.logprobs,
        top_logprobs=top_logprobs,
        logprobs_param="include",
        top_logprobs_param="top_logprobs",
    )
    options = GenerationOptions(
        max_tokens=body.max_output_tokens,
        max_tokens_param="max_output_tokens",
        sampling=Sampling(temperature=body.temperature, top_p=body.top_p),
        stream=bool(body.stream),
        output=output,
    )
    return input_request(body, sealer, options, output_constraint(body.text), history), includes


def input_request(
    body: InputFields,
    sealer: Sealer,
    options: GenerationOptions | None = None,
    constraint: OutputConstraint | None = None,
    history: History = NO_HISTORY,
) -> ConversationRequest:
    """The conversation, its tools and reasoning options (what an input-token count renders too)."""
    specs = parse_tools(body.tools)
    choice = parse_tool_choice(body.tool_choice, specs)
    tools = ToolOptions(specs, choice, parallel=body.parallel_tool_calls is not False)
    truncate = body.truncation == "auto"
    conversation = conversation_of(body.input, body.instructions, sealer, truncate, history.items, history.field)
    return ConversationRequest(
        conversation, options or GenerationOptions(), tools, constraint, reasoning_options(body.reasoning)
    )


async def count_input_tokens(
    body: InputTokensRequest, model: ServedModel, sealer: Sealer, history: History = NO_HISTORY
) -> dict[str, object]:
    """The `response.input_tokens` object: the tokens of the prompt the request would render."""
    check_stateful(body)
    tokens = await count_prompt_tokens(input_request(body, sealer, history=history), model)
    return {"object": "response.input_tokens", "input_tokens": tokens}
