"""POST /v1/chat/completions in the core's terms: messages -> a conversation, fields -> options, tools, guides."""

from __future__ import annotations

from typing import Any

from gateway.core.generation import Generation
from gateway.core.planning import TraceHeaders, plan_conversation
from gateway.core.request import (
    Conversation,
    ConversationRequest,
    GenerationOptions,
    ImagePart,
    OutputOptions,
    ToolOptions,
    Turn,
)
from gateway.core.served_model import ServedModel
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.chat_completions.encode import ChatEncoder
from gateway.protocols.chat_completions.guides import output_constraint
from gateway.protocols.chat_completions.request import ChatCompletionRequest, ChatMessage, check_chat_unsupported
from gateway.protocols.chat_completions.tools import parse_tool_calls, parse_tool_choice, parse_tools
from gateway.protocols.openai_shared import ResponseMeta, include_usage, sampling_of, stop_strings

ID_PREFIX = "chatcmpl"


async def chat_generation(
    body: ChatCompletionRequest, model: ServedModel, request_id: str, trace_headers: TraceHeaders = ()
) -> Generation:
    """Validate what the gateway cannot honour, then plan the choices and pick the encoder."""
    meta = ResponseMeta.new(ID_PREFIX, model, request_id)
    run = await plan_conversation(decode_chat(body), model, meta.id, trace_headers)
    return Generation(run, ChatEncoder(meta, include_usage(body)), bool(body.stream))


def decode_chat(body: ChatCompletionRequest) -> ConversationRequest:
    """The request in the core's terms; 400 naming the field for what is malformed or not supported."""
    check_chat_unsupported(body)
    specs = parse_tools(body.tools)
    tools = ToolOptions(
        specs, parse_tool_choice(body.tool_choice, specs), parallel=body.parallel_tool_calls is not False
    )
    conversation = Conversation(tuple(_turn(message, index) for index, message in enumerate(body.messages)))
    constraint = output_constraint(
        body.response_format,
        body.structured_outputs,
        guided_json=body.guided_json,
        guided_regex=body.guided_regex,
        guided_choice=body.guided_choice,
        guided_grammar=body.guided_grammar,
    )
    requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    output = OutputOptions(n=body.n or 1, logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0)
    options = GenerationOptions(
        max_tokens=requested,
        sampling=sampling_of(body),
        stop=stop_strings(body),
        stream=bool(body.stream),
        output=output,
    )
    return ConversationRequest(conversation, options, tools, constraint)


def _turn(message: ChatMessage, index: int) -> Turn:
    where = f"messages[{index}]"
    if message.role == "tool" and message.tool_call_id is None:
        raise InvalidRequestError("A tool message needs 'tool_call_id'", param=f"{where}.tool_call_id")
    text = message.content or ""
    content: tuple[str | ImagePart, ...] = ()
    if not isinstance(text, str):  # a list of parts (a plain string, the common case, needs no more work)
        content = message_content(text, index, message.role)
        text = "".join(item for item in content if isinstance(item, str))
    return Turn(
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        role="system" if message.role == "developer" else message.role,
        text=text,
        param=where,
        name=message.name,
        tool_calls=parse_tool_calls(message.tool_calls, index) if message.tool_calls else (),
        call_id=message.tool_call_id,
        call_id_param=f"{where}.tool_call_id",
        content=content if any(isinstance(item, ImagePart) for item in content) else (),  # only with images
    )


def message_content(content: Any, index: int, role: str = "user") -> tuple[str | ImagePart, ...]:
    """A message's text parts and images in order (a string content is one text part); images only from the
    user, as OpenAI's API takes them."""
    if content is None or isinstance(content, str):
        return (content,) if content else ()
    items: list[str | ImagePart] = []
    for part_index, part in enumerate(content):
        where = f"messages[{index}].content[{part_index}]"
        if part.type == "text":
            items.append(part.text)
        elif part.type == "image_url" and role == "user":
            image = part.image_url
            url, detail = (image, None) if isinstance(image, str) else (image.url, image.detail)
            items.append(ImagePart(url, detail or "auto", param=f"{where}.image_url"))
        elif part.type == "image_url":
            raise InvalidRequestError(f"image parts are taken in user messages only, not in {role} ones", param=where)
        else:
            raise UnsupportedFeatureError(
                f"content parts of type '{part.type}' are not supported (text and image_url only)", param=where
            )
    return tuple(items)
