"""POST /v1/chat/completions."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.sse import SSEResponse
from gateway.api.state import registry_of, request_id_of, trace_headers_of_request, track_request
from gateway.openai.chat import chat_chunks, chat_generation_request, chat_response
from gateway.openai.generation import TextStream
from gateway.openai.protocol import ChatCompletionRequest
from gateway.openai.served_model import ResponseMeta

router = APIRouter(tags=["OpenAI"])


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Create a chat completion (streamed as server-sent events when `stream` is true)."""
    model = registry_of(request).get(body.model)
    tracked = track_request(model.name, bool(body.stream), body.user)
    meta = ResponseMeta.new("chatcmpl", model, request_id_of(request))
    generation = chat_generation_request(body, model, meta, trace_headers_of_request())
    stream = TextStream(model.engine, generation, model.counter)
    tracked.append(stream)
    if body.stream:
        # Wait for the first token before answering, so upstream refusals get a proper status code.
        await cancel_on_disconnect(request, stream.start())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return SSEResponse(chat_chunks(stream, meta, include_usage))
    text = await cancel_on_disconnect(request, stream.collect())
    return Response(orjson.dumps(chat_response(text, stream, meta)), media_type="application/json")
