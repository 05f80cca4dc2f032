"""POST /v1/messages and /v1/messages/count_tokens in the core's terms: content blocks -> a conversation, fields ->
options, tools, reasoning and an output constraint; then the core plans (or counts) it."""

from __future__ import annotations

from gateway.core.generation import Generation
from gateway.core.planning import TraceHeaders, count_prompt_tokens, plan_conversation
from gateway.core.request import ConversationRequest, GenerationOptions, Sampling
from gateway.core.served_model import ServedModel
from gateway.protocols.messages.content import conversation_of
from gateway.protocols.messages.encode import MessagesEncoder
from gateway.protocols.messages.ids import new_message_id
from gateway.protocols.messages.options import managed_context, output_constraint, reasoning_options
from gateway.protocols.messages.request import (
    ConversationFields,
    CountTokensRequest,
    MessagesRequest,
    check_messages_unsupported,
)
from gateway.protocols.messages.signatures import ThinkingSigner
from gateway.protocols.messages.tools import tool_options


async def messages_generation(
    body: MessagesRequest,
    model: ServedModel,
    request_id: str,
    trace_headers: TraceHeaders,
    signer: ThinkingSigner,
) -> Generation:
    """Decode the request, plan its one choice, and pick the encoder (the message id is the engine's request id)."""
    message_id = new_message_id(request_id)
    run = await plan_conversation(decode_messages(body, signer), model, message_id, trace_headers)
    return Generation(run, MessagesEncoder(message_id, model.name, signer), bool(body.stream))


async def count_message_tokens(body: CountTokensRequest, model: ServedModel, signer: ThinkingSigner) -> int:
    """The input tokens of a request: its prompt as a generation would render it."""
    return await count_prompt_tokens(conversation_request(body, signer, GenerationOptions()), model)


def decode_messages(body: MessagesRequest, signer: ThinkingSigner) -> ConversationRequest:
    """The request in the core's terms; 400 naming the field for what is malformed or not supported."""
    sampling = Sampling(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k)
    options = GenerationOptions(
        max_tokens=body.max_tokens,
        sampling=sampling,
        stop=tuple(stop for stop in body.stop_sequences or () if stop),
        stream=bool(body.stream),
    )
    return conversation_request(body, signer, options)


def conversation_request(
    body: ConversationFields, signer: ThinkingSigner, options: GenerationOptions
) -> ConversationRequest:
    """What a generation and a token count share: the conversation, tools, reasoning and output constraint."""
    check_messages_unsupported(body)
    tools = tool_options(body.tools, body.tool_choice)
    conversation = managed_context(conversation_of(body, signer), body.context_management)
    reasoning = reasoning_options(body, options.max_tokens)
    return ConversationRequest(conversation, options, tools, output_constraint(body), reasoning)
