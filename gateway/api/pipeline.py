"""The one request pipeline of the generation endpoints: model, ids, plan, then a stream or a body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.sse import SSEResponse
from gateway.api.state import registry_of, request_id_of, settings_of, trace_headers_of_request, track_request
from gateway.openai.generation import Generation, respond, stream_chunks
from gateway.openai.protocol import SamplingFields
from gateway.openai.served_model import ResponseMeta, ServedModel

Body = TypeVar("Body", bound=SamplingFields)
Planner = Callable[[Body, ServedModel, ResponseMeta, tuple[tuple[str, str], ...]], Awaitable[Generation]]


async def serve_generation(request: Request, body: Body, id_prefix: str, plan: Planner[Body]) -> Response:
    """Plan the request's choices and answer: SSE when it streams, else the whole JSON body.

    Every failure is a GatewayError raised to the app's error handlers (before the response starts) or
    reported in the stream by SSEResponse (after): nothing to catch here.
    """
    model = registry_of(request).get(body.model)
    tracked = track_request(model.name, bool(body.stream), body.user)
    meta = ResponseMeta.new(id_prefix, model, request_id_of(request))
    generation = await plan(body, model, meta, trace_headers_of_request())
    tracked.extend(generation.run.choices)
    if generation.stream:
        settings = settings_of(request)
        return SSEResponse(stream_chunks(generation), settings.sse_keepalive_s, settings.client_write_timeout_s)
    result = await cancel_on_disconnect(request, respond(generation))
    return Response(orjson.dumps(result), media_type="application/json")
