"""The stored responses: GET (whole, or a background response's events replayed from a sequence number, then live),
DELETE, POST .../cancel (background responses) and GET .../input_items. Another key's response is a 404 like an
unknown id."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from gateway.api.background import POLL_S, TERMINAL_EVENTS, BackgroundRunner
from gateway.api.conversations import page_query
from gateway.api.errors import error_shape_of
from gateway.api.sse import Framing, SSEResponse, StreamStyle
from gateway.api.state import settings_of
from gateway.api.store_access import StoreUnavailableError, owner_of, store_of
from gateway.core.generation import NamedEvent
from gateway.errors import GatewayError, InvalidRequestError, NotFoundError
from gateway.protocols.responses.conversations import PageQuery, deleted_object, item_list
from gateway.protocols.responses.stored import cancelled, chain_history, lifecycle_event
from gateway.state import TERMINAL_STATUSES, EventRecord, ResponseRecord, Store

router = APIRouter(tags=["OpenAI"])
REPLAY_STREAM = StreamStyle(named=True)
CANCEL_WAIT_S = 3.0
EVENTS_PER_READ = 1000


def runner_of(request: Request) -> BackgroundRunner:
    """This replica's background runner (open with the store)."""
    runner = getattr(request.app.state, "background", None)
    if runner is None:
        raise StoreUnavailableError("The store is not available right now; try again.")
    return runner


def _no_response(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


async def _owned(request: Request, response_id: str) -> tuple[Store, ResponseRecord]:
    store = store_of(request)
    record = await store.responses.get(response_id, owner_of(request))
    if record is None:
        raise _no_response(response_id)
    return store, record


def _json(body: bytes | dict[str, Any]) -> Response:
    return Response(body if isinstance(body, bytes) else orjson.dumps(body), media_type="application/json")


@router.get("/v1/responses/{response_id}")
async def retrieve_response(
    response_id: str,
    request: Request,
    stream: bool = False,
    starting_after: Annotated[int, Query(ge=-1)] = -1,
    include_obfuscation: bool | None = None,
) -> Response:
    """A stored response; with `stream=true`, a background response's events after `starting_after`, then live."""
    store, record = await _owned(request, response_id)
    if not stream:
        return _json(record.body)
    if not record.background:
        raise InvalidRequestError("Only background responses can be streamed again.", param="stream")
    settings = settings_of(request)
    framing = Framing(REPLAY_STREAM, replay_failure, error_shape_of(request.scope))
    events = replay(store, runner_of(request), response_id, starting_after)
    return SSEResponse(events, framing, settings.sse_keepalive_s, settings.client_write_timeout_s)


def replay_failure(error: GatewayError, body: bytes) -> list[NamedEvent]:
    """A replay that cannot go on (the store failed): one `error` event."""
    fields = {"type": "error", "code": error.code or error.type, "message": error.message, "param": error.param}
    return [(b"error", orjson.dumps(fields))]


async def replay(
    store: Store, runner: BackgroundRunner, response_id: str, after: int
) -> AsyncGenerator[list[NamedEvent], None]:
    """The stored events after `after`, then new ones as they are stored, until the response's last event (or
    its deletion). A run on this replica wakes the reader when it stores events; others are polled."""
    while True:
        events = await store.responses.events_after(response_id, after, EVENTS_PER_READ)
        if events:
            after = events[-1].sequence
            yield [(event.name.encode(), event.data) for event in events]
            if any(event.name.encode() in TERMINAL_EVENTS for event in events):
                return
            continue
        record = await store.responses.load(response_id)
        if record is None:
            return
        if record.status in TERMINAL_STATUSES:
            last = await store.responses.events_after(response_id, after, EVENTS_PER_READ)
            if last:
                yield [(event.name.encode(), event.data) for event in last]
            return
        run = runner.runs.get(response_id)
        if run is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.changed.wait(), POLL_S)
        else:
            await asyncio.sleep(POLL_S / 2)


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    """Delete a stored response (a background one that still runs is stopped)."""
    store = store_of(request)
    if not await store.responses.delete(response_id, owner_of(request)):
        raise _no_response(response_id)
    runner = getattr(request.app.state, "background", None)
    if runner is not None:
        runner.cancel_here(response_id)  # elsewhere, its replica sees the run gone at its next poll
    return _json(deleted_object(response_id, "response"))


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request) -> Response:
    """Cancel a background response: its generation stops (on whichever replica runs it); the response as it
    ended. A response that already ended is returned as it is."""
    store, record = await _owned(request, response_id)
    if not record.background:
        raise InvalidRequestError(
            "Only responses created with 'background: true' can be cancelled.", param="response_id"
        )
    if record.status in TERMINAL_STATUSES:
        return _json(record.body)
    runner = runner_of(request)
    run = runner.runs.get(response_id)
    if run is not None and run.task is not None and runner.cancel_here(response_id):
        await asyncio.wait({run.task}, timeout=CANCEL_WAIT_S)
    elif await store.runs.ask_cancel(response_id):
        await _wait_until_ended(store, response_id, time.monotonic() + CANCEL_WAIT_S)
    ended = await store.responses.load(response_id)
    if ended is None:
        raise _no_response(response_id)
    if ended.status not in TERMINAL_STATUSES:  # its replica did not answer in time: cancelled here, for good
        ended = await _cancel_in_store(store, ended)
    return _json(ended.body)


async def _wait_until_ended(store: Store, response_id: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        record = await store.responses.load(response_id)
        if record is None or record.status in TERMINAL_STATUSES:
            return
        await asyncio.sleep(0.1)


async def _cancel_in_store(store: Store, record: ResponseRecord) -> ResponseRecord:
    response = cancelled(orjson.loads(record.body))
    body = orjson.dumps(response)
    if await store.responses.update_running(record.id, "cancelled", body):
        sequence = (await store.responses.last_event(record.id) or -1) + 1
        name, data = lifecycle_event("response.failed", response, sequence)
        await store.responses.add_events(record.id, [EventRecord(sequence, name, data)])
        await store.runs.ask_cancel(record.id)
        record.status, record.body = "cancelled", body
        return record
    return await store.responses.load(record.id) or record


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str, request: Request, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    """The items the response was generated from: what `previous_response_id` brought in, then its own input
    (newest first by default; `after`, `limit`, `order`)."""
    store = store_of(request)
    chain = await store.responses.chain(response_id, owner_of(request))
    if not chain or chain[-1].id != response_id:
        raise _no_response(response_id)
    items = list(chain_history((record.input, record.body) for record in chain[:-1]).items)
    items += orjson.loads(chain[-1].input)
    return _json(_page(items, query))


def _page(items: list[dict[str, Any]], query: PageQuery) -> bytes:
    ordered = items if query.order == "asc" else items[::-1]
    start = 0
    if query.after is not None:
        position = next((i for i, item in enumerate(ordered) if item.get("id") == query.after), None)
        if position is None:
            raise NotFoundError(f"Item with id '{query.after}' not found.", param="after")
        start = position + 1
    page = ordered[start : start + query.limit]
    return item_list([orjson.dumps(item) for item in page], start + query.limit < len(ordered))
