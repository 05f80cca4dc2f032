"""POST /v1/completions."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.sse import SSEResponse
from gateway.api.state import registry_of, request_id_of, trace_headers_of_request, track_request
from gateway.openai.completions import (
    completion_chunks,
    completion_generation_requests,
    completion_response,
    run_all,
)
from gateway.openai.generation import TextStream
from gateway.openai.protocol import CompletionRequest
from gateway.openai.served_model import ResponseMeta

router = APIRouter(tags=["OpenAI"])


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    """Create a completion for a prompt or a list of prompts."""
    model = registry_of(request).get(body.model)
    tracked = track_request(model.name, bool(body.stream), body.user)
    meta = ResponseMeta.new("cmpl", model, request_id_of(request))
    streams = [
        TextStream(model.engine, g, model.counter)
        for g in completion_generation_requests(body, model, meta, trace_headers_of_request())
    ]
    tracked.extend(streams)
    if body.stream:
        # Wait for every first token before answering, so upstream refusals get a proper status code.
        await cancel_on_disconnect(request, run_all([s.start() for s in streams], streams))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        echo = [s.request.prompt for s in streams] if body.echo else None
        return SSEResponse(completion_chunks(streams, meta, include_usage, echo))
    result = await cancel_on_disconnect(request, completion_response(streams, meta, bool(body.echo)))
    return Response(orjson.dumps(result), media_type="application/json")
