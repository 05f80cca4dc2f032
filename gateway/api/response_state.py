"""What a new response carries over from the store and what it leaves there: its history (`previous_response_id`,
`conversation`), the upstream its conversation went to, and the response and conversation items saved when it
ends (before a stream's last event, so a client that reads `response.completed` can build on it at once).

The owner is checked on every read: another key's response or conversation is a 404 like an unknown id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request

from gateway.api.state import route_by_session
from gateway.api.store_access import owner_of, store_of
from gateway.core.generation import Generation
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.protocols.responses.request import InputFields, ResponsesRequest, check_stateful
from gateway.protocols.responses.stored import (
    NO_HISTORY,
    History,
    chain_history,
    conversation_history,
    conversation_id_of,
    output_items,
)
from gateway.state import TERMINAL_STATUSES, ItemRecord, ResponseRecord, Store
from gateway.state.database import Connection


@dataclass(slots=True)
class TurnState:
    """The stored context of one new response."""

    store: Store | None
    owner: str
    history: History = NO_HISTORY
    conversation_id: str | None = None
    thread_id: str | None = None  # the conversation's stable id: affinity key, and what the new response joins

    def saves(self, body: ResponsesRequest) -> bool:
        """Whether the turn writes anything when it ends (the response, or its conversation's new items)."""
        return body.store is not False or self.conversation_id is not None


async def turn_state(request: Request, body: InputFields) -> TurnState:
    """Load what `previous_response_id` or `conversation` brings in, and route the turn to its conversation's
    upstream (or the one of its `prompt_cache_key`)."""
    check_stateful(body)  # what cannot go together is refused before anything is read
    owner = owner_of(request)
    needs_store = body.previous_response_id is not None or body.conversation is not None
    if isinstance(body, ResponsesRequest):
        needs_store = needs_store or body.store is not False or bool(body.background)
    state = TurnState(store_of(request) if needs_store else None, owner)
    if state.store is not None and body.previous_response_id is not None:
        await _load_chain(state, state.store, body.previous_response_id)
    conversation_id = conversation_id_of(body.conversation)
    if state.store is not None and conversation_id is not None:
        items = await state.store.conversations.items(conversation_id, owner)
        if items is None:
            raise NotFoundError(f"Conversation with id '{conversation_id}' not found.", param="conversation")
        state.history = conversation_history(item.data for item in items)
        state.conversation_id = state.thread_id = conversation_id
    route_by_session(state.thread_id or getattr(body, "prompt_cache_key", None))
    return state


async def _load_chain(state: TurnState, store: Store, previous_id: str) -> None:
    chain = await store.responses.chain(previous_id, state.owner)
    if not chain or chain[-1].id != previous_id:
        raise InvalidRequestError(  # OpenAI's answer: a 400 with this code
            f"Previous response with id '{previous_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    if chain[-1].status not in TERMINAL_STATUSES:
        raise InvalidRequestError(
            f"Previous response with id '{previous_id}' is still {chain[-1].status}: wait until it ends.",
            param="previous_response_id",
        )
    state.history = chain_history((record.input, record.body) for record in chain)
    state.thread_id = chain[-1].thread_id


def response_record(
    state: TurnState, body: ResponsesRequest, response: dict[str, Any], input_items: list[dict[str, Any]]
) -> ResponseRecord:
    """The record of a response (its object as the client got it) and this turn's input."""
    now = time.time()
    assert state.store is not None
    return ResponseRecord(
        id=response["id"],
        owner=state.owner,
        created_at=now,
        status=response["status"],
        body=orjson.dumps(response),
        input=orjson.dumps(input_items),
        previous_id=body.previous_response_id,
        conversation_id=state.conversation_id,
        thread_id=state.thread_id or response["id"],
        background=bool(body.background),
        expires_at=state.store.response_expiry(now),
    )


def check_input_size(state: TurnState, input_items: list[dict[str, Any]]) -> None:
    """413 naming `input` when this turn's input alone is too large to store."""
    if state.store is not None:
        size = len(orjson.dumps(input_items))
        if size > state.store.limits.max_response_bytes:
            raise ResponseTooLargeError(size, state.store.limits.max_response_bytes)


class ResponseTooLargeError(InvalidRequestError):
    """This turn's input cannot be stored."""

    status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The input takes {size} bytes; at most {limit} can be stored. Send it with `store: false`.",
            param="input",
            code="request_too_large",
        )


async def append_to_conversation(
    state: TurnState,
    input_items: list[dict[str, Any]],
    response: dict[str, Any],
    connection: Connection | None = None,
) -> None:
    """Add this turn's input and output at the end of its conversation (if it has one)."""
    if state.conversation_id is None or state.store is None:
        return
    items = [ItemRecord(item["id"], orjson.dumps(item)) for item in input_items + output_items(response)]
    now = time.time()
    expiry = state.store.conversation_expiry(now)
    await state.store.conversations.append(
        state.conversation_id, state.owner, items, now, expiry, "conversation", connection
    )


async def save_turn(
    state: TurnState, body: ResponsesRequest, response: dict[str, Any], input_items: list[dict[str, Any]]
) -> None:
    """Store the ended response (unless `store: false`) and add this turn's input and output to its
    conversation, in one transaction."""
    store = state.store
    assert store is not None
    record = response_record(state, body, response, input_items) if body.store is not False else None
    if record is not None:
        store.responses.check_size(record, "input")
    async with store.database.transaction() as connection:
        if record is not None:
            await store.responses.put(record, connection)
        await append_to_conversation(state, input_items, response, connection)


def final_response(sent: list[Any] | dict[str, Any]) -> dict[str, Any]:
    """The response a generation ends with: a whole body, or the one its stream's closing event carries."""
    if isinstance(sent, dict):
        return sent
    for _, data in sent:
        event = orjson.loads(data)
        if isinstance(event.get("response"), dict):
            return dict(event["response"])
    raise ValueError("the stream's closing events carry no response")


def save_when_ending(
    state: TurnState, body: ResponsesRequest, generation: Generation, input_items: list[dict[str, Any]]
) -> None:
    """Make the generation save its turn just before its end reaches the client."""

    async def save(sent: list[Any] | dict[str, Any]) -> None:
        await save_turn(state, body, final_response(sent), input_items)

    generation.before_end = save
