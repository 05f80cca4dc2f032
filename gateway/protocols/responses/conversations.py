"""The Conversations API's bodies and objects: a conversation (id, metadata, creation time), its items in order.

Items are the Responses API's input items in their stored form (stored_items.py); at most 20 are added per
request, as OpenAI allows. Metadata: at most 16 pairs, keys up to 64 characters, values up to 512.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import AfterValidator, Field

from gateway.errors import InvalidRequestError
from gateway.protocols.openai_shared import Int, OpenAIModel, StrictStr, encodable_tree
from gateway.protocols.responses.stored_items import stored_item

MAX_ITEMS_PER_REQUEST = 20
DEFAULT_PAGE = 20
MAX_PAGE = 100
FreeJson = Annotated[Any, AfterValidator(encodable_tree)]
Metadata = Annotated[
    dict[Annotated[StrictStr, Field(max_length=64)], Annotated[StrictStr, Field(max_length=512)]], Field(max_length=16)
]
# The `include` values of OpenAI's API: accepted everywhere items are read; stored items already hold what they have
Includable = Literal[
    "web_search_call.action.sources",
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
]
INCLUDABLE_VALUES: tuple[str, ...] = get_args(Includable)


class ConversationCreateRequest(OpenAIModel):
    """Body of POST /v1/conversations."""

    items: Annotated[list[FreeJson], Field(max_length=MAX_ITEMS_PER_REQUEST)] | None = None
    metadata: Metadata | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=64)] | None = None


class ConversationUpdateRequest(OpenAIModel):
    """Body of POST /v1/conversations/{id}."""

    metadata: Metadata | None


class ItemsCreateRequest(OpenAIModel):
    """Body of POST /v1/conversations/{id}/items."""

    items: Annotated[list[FreeJson], Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)]


class PageQuery(OpenAIModel):
    """The query of a list of items: `after` (an item id), `limit` (1 to 100), `order`, `include`."""

    after: StrictStr | None = None
    limit: Annotated[Int, Field(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE
    order: Literal["asc", "desc"] = "desc"
    include: list[Includable] = Field(default_factory=list)


def includes(values: list[str]) -> list[Includable]:
    """The `include` values of a query (`include=...` or `include[]=...`); 400 for one OpenAI does not define."""
    for value in values:
        if value not in INCLUDABLE_VALUES:
            raise InvalidRequestError(
                f"Invalid value for 'include': '{value[:100]}'. Supported: {', '.join(INCLUDABLE_VALUES)}.",
                param="include",
            )
    return values  # type: ignore[return-value]


def stored_items(items: list[Any] | None, field: str) -> list[dict[str, Any]]:
    """The request's items in their stored form, each with a fresh id."""
    return [stored_item(item, f"{field}[{index}]") for index, item in enumerate(items or [])]


def metadata_json(metadata: dict[str, str] | None) -> bytes:
    """Metadata as the store keeps it."""
    return orjson.dumps(metadata or {})


def conversation_object(conversation_id: str, created_at: float, metadata: bytes) -> dict[str, Any]:
    """A conversation as the API returns it."""
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": int(created_at),
        "metadata": orjson.loads(metadata),
    }


def deleted_object(object_id: str, kind: str) -> dict[str, Any]:
    """The answer to a deletion (`conversation.deleted`, `response.deleted`)."""
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}


def item_list(items: list[bytes], has_more: bool) -> bytes:
    """A page of items as the API returns it, from the stored JSON of each (no re-encoding of the items)."""
    first_id = last_id = None
    if items:
        first_id = orjson.loads(items[0]).get("id")
        last_id = orjson.loads(items[-1]).get("id")
    head = orjson.dumps({"object": "list", "first_id": first_id, "last_id": last_id, "has_more": has_more})
    return head[:-1] + b',"data":[' + b",".join(items) + b"]}"
