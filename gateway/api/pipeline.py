"""The one request pipeline of every generation endpoint: model, ids, plan, then a stream or a body.

A protocol's route gives its planner (request body -> Generation: the core's running choices and the protocol's
encoder, its ids made by the protocol) and its stream style; the error shape comes from the route's path
(api/errors.py). Nothing else differs between protocols here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.errors import error_shape_of
from gateway.api.sse import Framing, SSEResponse, StreamStyle
from gateway.api.state import request_id_of, settings_of, trace_headers_of_request, track_request
from gateway.api.tenancy import admit_generation, served_model
from gateway.core.generation import Generation, respond, stream_chunks
from gateway.core.served_model import ServedModel


class GenerationBody(Protocol):
    """What the pipeline reads from any protocol's validated body."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool | None: ...

    @property
    def user(self) -> str | None: ...


Body = TypeVar("Body", bound=GenerationBody)
# (body, model, request id, W3C trace headers) -> the planned generation
Planner = Callable[[Body, ServedModel, str, tuple[tuple[str, str], ...]], Awaitable[Generation]]


@dataclass(frozen=True, slots=True)
class GenerationRoute(Generic[Body]):
    """What a protocol's generation route gives the pipeline."""

    plan: Planner[Body]
    stream_style: StreamStyle


async def serve_generation(request: Request, body: Body, route: GenerationRoute[Body]) -> Response:
    """Plan the request's choices and answer: SSE when it streams, else the whole JSON body.

    Every failure is a GatewayError raised to the app's error handlers (before the response starts) or
    reported in the stream by SSEResponse (after): nothing to catch here.
    """
    model = served_model(request, body.model)
    tracked = track_request(model.name, bool(body.stream), body.user)
    generation = await route.plan(body, model, request_id_of(request), trace_headers_of_request())
    headers = await admit_generation(request, generation.run, model)  # the key's limits: one backend call
    tracked.extend(generation.run.choices)
    if generation.stream:
        settings = settings_of(request)
        framing = Framing(route.stream_style, generation.encoder.failure, error_shape_of(request.scope))
        return SSEResponse(
            stream_chunks(generation), framing, settings.sse_keepalive_s, settings.client_write_timeout_s, headers
        )
    result = await cancel_on_disconnect(request, respond(generation))
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)
