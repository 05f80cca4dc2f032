"""The Conversations API: /v1/conversations (create, retrieve, update metadata, delete) and its items (list,
create, retrieve, delete), each conversation its owner's alone: another key gets the 404 of an unknown id."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from gateway.api.store_access import owner_of, store_of
from gateway.errors import NotFoundError
from gateway.protocols.responses.conversations import (
    DEFAULT_PAGE,
    MAX_PAGE,
    ConversationCreateRequest,
    ConversationUpdateRequest,
    ItemsCreateRequest,
    PageQuery,
    conversation_object,
    deleted_object,
    includes,
    item_list,
    metadata_json,
    stored_items,
)
from gateway.protocols.responses.output import new_id
from gateway.state import ConversationRecord, ItemRecord

router = APIRouter(tags=["Conversations"])


def _json(body: dict[str, Any] | bytes) -> Response:
    return Response(body if isinstance(body, bytes) else orjson.dumps(body), media_type="application/json")


def _no_conversation(conversation_id: str) -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def _no_item(item_id: str) -> NotFoundError:
    return NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")


def _records(items: list[dict[str, Any]]) -> list[ItemRecord]:
    return [ItemRecord(item["id"], orjson.dumps(item)) for item in items]


@router.post("/v1/conversations")
async def create_conversation(body: ConversationCreateRequest, request: Request) -> Response:
    """Create a conversation, with up to 20 first items."""
    store = store_of(request)
    items = stored_items(body.items, "items")
    now = time.time()
    record = ConversationRecord(new_id("conv"), owner_of(request), now, metadata_json(body.metadata))
    await store.conversations.create(record, _records(items), store.conversation_expiry(now), "items")
    return _json(conversation_object(record.id, now, record.metadata))


@router.get("/v1/conversations/{conversation_id}")
async def retrieve_conversation(conversation_id: str, request: Request) -> Response:
    """A conversation."""
    found = await store_of(request).conversations.get(conversation_id, owner_of(request))
    if found is None:
        raise _no_conversation(conversation_id)
    return _json(conversation_object(found.id, found.created_at, found.metadata))


@router.post("/v1/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, body: ConversationUpdateRequest, request: Request) -> Response:
    """Replace a conversation's metadata."""
    store = store_of(request)
    found = await store.conversations.set_metadata(
        conversation_id, owner_of(request), metadata_json(body.metadata), time.time()
    )
    if found is None:
        raise _no_conversation(conversation_id)
    return _json(conversation_object(found.id, found.created_at, found.metadata))


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    """Delete a conversation and its items."""
    if not await store_of(request).conversations.delete(conversation_id, owner_of(request)):
        raise _no_conversation(conversation_id)
    return _json(deleted_object(conversation_id, "conversation"))


def page_query(
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    order: Literal["asc", "desc"] = "desc",
) -> PageQuery:
    """A list's query parameters (`include` as `include=...` or `include[]=...`, as SDKs send arrays)."""
    params = request.query_params
    return PageQuery(
        after=after, limit=limit, order=order, include=includes(params.getlist("include") + params.getlist("include[]"))
    )


@router.get("/v1/conversations/{conversation_id}/items")
async def list_items(
    conversation_id: str, request: Request, query: Annotated[PageQuery, Depends(page_query)]
) -> Response:
    """A page of a conversation's items (`after`, `limit`, `order`; newest first by default)."""
    store, owner = store_of(request), owner_of(request)
    page = await store.conversations.page(conversation_id, owner, query.after, query.limit, query.order)
    if page is None:
        if query.after is not None and await store.conversations.get(conversation_id, owner) is not None:
            raise _no_item(query.after)
        raise _no_conversation(conversation_id)
    return _json(item_list([item.data for item in page.items], page.has_more))


@router.post("/v1/conversations/{conversation_id}/items")
async def create_items(conversation_id: str, body: ItemsCreateRequest, request: Request) -> Response:
    """Add up to 20 items at the end of a conversation; the items as stored."""
    store = store_of(request)
    records = _records(stored_items(body.items, "items"))
    now = time.time()
    placed = await store.conversations.append(
        conversation_id, owner_of(request), records, now, store.conversation_expiry(now), "items"
    )
    if placed is None:
        raise _no_conversation(conversation_id)
    return _json(item_list([item.data for item in placed], has_more=False))


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(conversation_id: str, item_id: str, request: Request) -> Response:
    """One item of a conversation."""
    store, owner = store_of(request), owner_of(request)
    found = await store.conversations.item(conversation_id, owner, item_id)
    if found is None:
        if await store.conversations.get(conversation_id, owner) is None:
            raise _no_conversation(conversation_id)
        raise _no_item(item_id)
    return _json(found.data)


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, request: Request) -> Response:
    """Delete one item; the conversation."""
    store, owner = store_of(request), owner_of(request)
    deleted = await store.conversations.delete_item(conversation_id, owner, item_id)
    if deleted is None:
        raise _no_conversation(conversation_id)
    if not deleted:
        raise _no_item(item_id)
    found = await store.conversations.get(conversation_id, owner)
    if found is None:  # deleted meanwhile
        raise _no_conversation(conversation_id)
    return _json(conversation_object(found.id, found.created_at, found.metadata))
