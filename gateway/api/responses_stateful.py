"""POST /v1/responses with the store: the history a turn continues from, the response saved when it ends, and
background responses (answered at once, run by this replica's BackgroundRunner)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway.api.errors import error_shape_of
from gateway.api.pipeline import GenerationRoute, Planner, serve_generation
from gateway.api.response_state import (
    TurnState,
    append_to_conversation,
    check_input_size,
    response_record,
    save_when_ending,
    turn_state,
)
from gateway.api.sse import Framing, SSEResponse, StreamStyle
from gateway.api.state import request_id_of, settings_of, trace_headers_of_request
from gateway.api.stored_responses import replay, replay_failure, runner_of
from gateway.api.tenancy import admit_background, served_model
from gateway.core.generation import Generation
from gateway.core.served_model import ServedModel
from gateway.errors import InvalidRequestError
from gateway.protocols.responses.decode import responses_generation
from gateway.protocols.responses.encode import ResponsesEncoder
from gateway.protocols.responses.request import ResponsesRequest
from gateway.protocols.responses.stored import queued, turn_input
from gateway.protocols.sealing import Sealer


async def create_response(request: Request, body: ResponsesRequest, sealer: Sealer, style: StreamStyle) -> Response:
    """Plan the response after its stored history; save it as it ends, or run it in the background."""
    state = await turn_state(request, body)
    input_items = _storable_input(body)
    if input_items is not None:
        check_input_size(state, input_items)
    plan = _planner(state, body, sealer, input_items)
    if body.background:
        return await _start_background(request, body, state, plan, style, input_items or [])
    return await serve_generation(request, body, GenerationRoute(plan, style))


def _storable_input(body: ResponsesRequest) -> list[dict[str, Any]] | None:
    """This turn's input as stored items; None when it has an item the decoder will refuse (and name) anyway."""
    try:
        return turn_input(body.input)
    except InvalidRequestError:
        return None


def _planner(
    state: TurnState, body: ResponsesRequest, sealer: Sealer, input_items: list[dict[str, Any]] | None
) -> Planner[ResponsesRequest]:
    async def plan(
        body: ResponsesRequest, model: ServedModel, request_id: str, trace_headers: tuple[tuple[str, str], ...]
    ) -> Generation:
        generation = await responses_generation(
            body, model, request_id, trace_headers, sealer=sealer, history=state.history
        )
        if state.saves(body) and not body.background and input_items is not None:
            save_when_ending(state, body, generation, input_items)
        return generation

    return plan


async def _start_background(
    request: Request,
    body: ResponsesRequest,
    state: TurnState,
    plan: Planner[ResponsesRequest],
    style: StreamStyle,
    input_items: list[dict[str, Any]],
) -> Response:
    """Store the queued response and start its run; answer with it (or, streamed, with its events as they are
    stored)."""
    model = served_model(request, body.model)
    # Its events are stored as they come, whether the client streams them or not: the upstream call streams.
    streamed = body.model_copy(update={"stream": True})
    generation = await plan(streamed, model, request_id_of(request), trace_headers_of_request())
    assert isinstance(generation.encoder, ResponsesEncoder) and state.store is not None
    response = queued(generation.encoder.snapshot())
    record = response_record(state, body, response, input_items)
    state.store.responses.check_size(record, "input")
    runner = runner_of(request)
    headers, finish_tenancy = await admit_background(request, generation.run, model)  # the key's limits

    async def on_end(final: dict[str, Any]) -> None:
        await append_to_conversation(state, input_items, final)

    put = state.store.runs.start(record, runner.replica, runner.lease_until())
    try:
        await runner.submit(response, put, generation, on_end if state.conversation_id else None, finish_tenancy)
    except BaseException:
        if finish_tenancy is not None:  # the run never started: nothing else will return its reservation
            finish_tenancy()
        raise
    if not body.stream:
        return Response(orjson.dumps(response), media_type="application/json", headers=headers)
    settings = settings_of(request)
    framing = Framing(style, replay_failure, error_shape_of(request.scope))
    events = replay(state.store, runner, response["id"], -1)
    return SSEResponse(events, framing, settings.sse_keepalive_s, settings.client_write_timeout_s, headers)
